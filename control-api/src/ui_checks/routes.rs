//! The `/api/v1/...` calls the console's JavaScript makes, and the routes the control API's
//! sources serve (method and path), so a call to a route that is not served is reported.

use std::collections::{BTreeMap, BTreeSet};

use super::lex::{ident, is, lex, literal, Kind};
use super::HTTP_METHODS;

/// `/api/...` routes the crate serves, with their methods (upper case), from `.route("...",
/// get(..).post(..))` calls in `src/routes/*.rs`.
pub(super) fn served_routes(rust_sources: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, src) in rust_sources {
        let mut rest = src.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let Some(after_quote) = rest.trim_start().strip_prefix('"') else { continue };
            let Some(close) = after_quote.find('"') else { break };
            let path = &after_quote[..close];
            // The method router: up to the `)` closing `.route(`.
            let body = &after_quote[close + 1..];
            let mut depth = 1;
            let end = body
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(body.len(), |(n, _)| n);
            let body = &body[..end];
            let methods = routes.entry(path.to_string()).or_default();
            for m in HTTP_METHODS {
                let mut from = 0;
                while let Some(n) = body[from..].find(&format!("{m}(")) {
                    let start = from + n;
                    let before = body[..start].chars().next_back();
                    if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                        methods.insert(m.to_uppercase());
                    }
                    from = start + m.len();
                }
            }
        }
    }
    routes.retain(|p, _| p.starts_with("/api/"));
    routes
}

/// A route the JS calls: method if known (`get(`, `post(`, `del(`, `put(`, `fetch(`,
/// `api('M', ...)`, or a listPage `path:`), and the path with `{}` for each computed segment.
#[derive(Debug)]
pub(super) struct ApiCall {
    method: Option<String>,
    path: String,
    at: String,
}

/// The path of a string or template literal up to its query: `${...}` as a whole segment is
/// `{}`; a hole glued to a segment (`${query(...)}`) ends the path.
fn call_path(parts: &[String]) -> String {
    let mut path = String::new();
    for (i, part) in parts.iter().enumerate() {
        let (p, cut) = match part.find(['?', '#']) {
            Some(n) => (&part[..n], true),
            None => (part.as_str(), false),
        };
        if i > 0 {
            let whole_segment = p.starts_with('/') || (p.is_empty() && (cut || i + 1 == parts.len()));
            if !(path.ends_with('/') && whole_segment) {
                break;
            }
            path.push_str("{}");
        }
        path.push_str(p);
        if cut {
            break;
        }
    }
    path
}

pub(super) fn api_calls(file: &str, src: &str) -> Vec<ApiCall> {
    let mut out = Vec::new();
    for s in lex(src) {
        for i in 0..s.len() {
            let parts = match &s[i].kind {
                Kind::Str(v) => vec![v.clone()],
                Kind::Tpl(parts) => parts.clone(),
                _ => continue,
            };
            if !parts[0].starts_with("/api/") {
                continue;
            }
            let back = |n: usize| i.checked_sub(n).and_then(|j| s.get(j));
            let method = if is(back(1), &Kind::Punct('(')) {
                match ident(back(2)) {
                    Some("get" | "fetch") => Some("GET".to_string()),
                    Some("post") => Some("POST".to_string()),
                    Some("put") => Some("PUT".to_string()),
                    Some("del") => Some("DELETE".to_string()),
                    _ => None,
                }
            } else if is(back(1), &Kind::Punct(':')) && ident(back(2)) == Some("path") {
                Some("GET".to_string()) // listPage loads with GET
            } else if is(back(1), &Kind::Punct(',')) && is(back(3), &Kind::Punct('(')) && ident(back(4)) == Some("api")
            {
                back(2).and_then(literal).map(|m| m.to_uppercase())
            } else {
                None
            };
            out.push(ApiCall { method, path: call_path(&parts), at: format!("{file}:{}", s[i].line) });
        }
    }
    out
}

fn path_matches(called: &str, route: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (called.split('/').collect(), route.split('/').collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| x == y || *x == "{}" || (y.starts_with('{') && y.ends_with('}')))
}

pub(super) fn route_problems(calls: &[ApiCall], routes: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    for c in calls {
        let served: BTreeSet<&String> =
            routes.iter().filter(|(r, _)| path_matches(&c.path, r)).flat_map(|(_, m)| m).collect();
        let method = c.method.as_deref().unwrap_or("a request to");
        if served.is_empty() {
            problems.push(format!("{}: {method} {} is not a route the control API serves", c.at, c.path));
        } else if c.method.as_ref().is_some_and(|m| !served.contains(m)) {
            problems.push(format!("{}: {method} {}: the route serves only {served:?}", c.at, c.path));
        }
    }
    problems
}
