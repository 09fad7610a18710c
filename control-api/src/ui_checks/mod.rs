//! Checks over the web console's JavaScript, as embedded in the binary (`routes::ui::ASSETS`):
//! - every language table (`js/lang/*.js`, chosen in `js/i18n.js`) has the same keys, with
//!   the same `{placeholders}`, no key twice and no empty text;
//! - every `t('key')` names a key the tables have (a template key such as `` t(`status.${s}`) ``
//!   must match at least one), and every key in the tables is used by some `t(...)`;
//! - a toast is given as `toast(() => t(...))`, so it can follow a language switch;
//! - no literal text is shown: children of `h()`, the text of `toast()`, `emptyState()`,
//!   `pageHead()` and `setMsg()`, the pairs of `dl()`, visible properties (`title:`, `placeholder:`, `'aria-label':`,
//!   `hint:`, `label:`, `text:`, `confirm:`, `alt:`) and `.textContent =` are never a string
//!   literal with letters in it (i18n.js and the tables themselves are exempt);
//! - every `'/api/v1/...'` the JS calls is a route `src/routes/*.rs` serves, with that method.
//!
//! Textual on purpose, with no JS parser: a small lexer that knows strings, template literals,
//! regular expressions and comments is enough for code written in the console's style. The
//! last tests feed each check a known violation, so none of them can pass by seeing nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::routes::ui::ASSETS;

mod lex;
mod routes;
use lex::{call_args, closing, ident, is, lex, literal, Kind, Tok};
use routes::{api_calls, route_problems, served_routes, ApiCall};

/// Literal text the console may show as is: the product's name and the token prefix.
const ALLOWED_TEXT: &[&str] = &["ClawButler", "cbt_…"];

/// Object properties whose value is shown to the user.
const VISIBLE_PROPS: &[&str] = &["title", "placeholder", "aria-label", "alt", "hint", "label", "text", "confirm"];

/// DOM properties that, assigned, show text.
const VISIBLE_ASSIGN: &[&str] = &["textContent", "innerText", "title", "placeholder"];

const HTTP_METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];

// ---------------------------------------------------------------------------------------------
// Language tables

/// One table: its keys in order (duplicates kept, to be reported), with text and `file:line`.
type Table = Vec<(String, String, String)>;

/// The language tables by language code, and the codes `LANGS` offers, from `files` (path,
/// text): i18n.js (`LANGS`, `TABLES`) and the table modules it imports.
fn tables(files: &[(String, String)]) -> (BTreeMap<String, Table>, BTreeSet<String>) {
    let mut objects: BTreeMap<String, Table> = BTreeMap::new();
    let mut codes: Vec<(String, String)> = Vec::new();
    let mut offered = BTreeSet::new();
    for (file, src) in files {
        scan_tables(file, &lex(src)[0], &mut objects, &mut codes, &mut offered);
    }
    let by_code = codes.into_iter().filter_map(|(code, name)| objects.get(&name).map(|t| (code, t.clone()))).collect();
    (by_code, offered)
}

/// One file's part of [`tables`]: its `const name = { ... }` objects, the `TABLES` entries
/// (code, object name) and the codes `LANGS` offers.
fn scan_tables(
    file: &str,
    s: &[Tok],
    objects: &mut BTreeMap<String, Table>,
    codes: &mut Vec<(String, String)>,
    offered: &mut BTreeSet<String>,
) {
    for i in 0..s.len() {
        if ident(s.get(i)) == Some("const")
            && is(s.get(i + 2), &Kind::Punct('='))
            && is(s.get(i + 3), &Kind::Punct('{'))
        {
            let name = ident(s.get(i + 1)).unwrap_or_default().to_string();
            let end = closing(s, i + 3);
            let mut table = Table::new();
            let mut depth = 0;
            for j in i + 4..end {
                match &s[j].kind {
                    Kind::Punct('(' | '[' | '{') => depth += 1,
                    Kind::Punct(')' | ']' | '}') => depth -= 1,
                    Kind::Str(k) | Kind::Ident(k) if depth == 0 && is(s.get(j + 1), &Kind::Punct(':')) => {
                        let text = s.get(j + 2).and_then(literal).unwrap_or_default();
                        table.push((k.clone(), text, format!("{file}:{}", s[j].line)));
                    }
                    _ => {}
                }
            }
            objects.insert(name, table);
        }
        // TABLES = { en, 'zh-CN': zh }
        if ident(s.get(i)) == Some("TABLES") && is(s.get(i + 1), &Kind::Punct('=')) {
            let end = closing(s, i + 2);
            for arg in call_args(s, i + 2) {
                let toks = &s[arg.start..arg.end.min(end)];
                match toks {
                    [Tok { kind: Kind::Ident(t), .. }] => codes.push((t.clone(), t.clone())),
                    [Tok { kind: Kind::Str(c) | Kind::Ident(c), .. }, Tok { kind: Kind::Punct(':'), .. }, Tok { kind: Kind::Ident(t), .. }] => {
                        codes.push((c.clone(), t.clone()))
                    }
                    _ => {}
                }
            }
        }
        // LANGS = [{ code: 'en', ... }, ...]
        if ident(s.get(i)) == Some("code") && is(s.get(i + 1), &Kind::Punct(':')) {
            if let Some(Kind::Str(c)) = s.get(i + 2).map(|t| &t.kind) {
                offered.insert(c.clone());
            }
        }
    }
}

/// `{name}` placeholders of a text.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(close) = rest.find('}') {
            let name = &rest[..close];
            if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// Differences between the language tables (empty when they agree).
fn table_problems(tables: &BTreeMap<String, Table>, offered: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let codes: BTreeSet<String> = tables.keys().cloned().collect();
    if codes != *offered || codes.len() < 2 {
        problems.push(format!("TABLES has {codes:?}, LANGS offers {offered:?}"));
    }
    let all: BTreeSet<&str> = tables.values().flatten().map(|(k, _, _)| k.as_str()).collect();
    for (code, table) in tables {
        let mut seen = BTreeSet::new();
        for (k, text, at) in table {
            if !seen.insert(k.as_str()) {
                problems.push(format!("{at}: '{k}' twice in the {code} table"));
            }
            if text.trim().is_empty() {
                problems.push(format!("{at}: '{k}' has no text in {code}"));
            }
        }
        for k in all.difference(&seen) {
            problems.push(format!("'{k}' is missing from the {code} table"));
        }
    }
    let text_of = |code: &String, key: &str| {
        tables.get(code).and_then(|t| t.iter().find(|(k, _, _)| k == key)).map(|(_, v, _)| v.clone())
    };
    if let Some(first) = codes.iter().next() {
        for key in &all {
            let want = text_of(first, key).map(|v| placeholders(&v));
            for code in codes.iter().skip(1) {
                let got = text_of(code, key).map(|v| placeholders(&v));
                if want.is_some() && got.is_some() && want != got {
                    problems.push(format!("'{key}': placeholders {want:?} in {first} but {got:?} in {code}"));
                }
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// t('key') uses

/// A key as a `t()` call names it: literal parts around `${...}` holes (one part = exact).
#[derive(Debug, Clone)]
struct KeyUse {
    parts: Vec<String>,
    at: String,
}

/// Every `t(<literal>, ...)` in a file.
fn key_uses(file: &str, src: &str) -> Vec<KeyUse> {
    let mut out = Vec::new();
    for s in lex(src) {
        for i in 0..s.len() {
            let call = ident(s.get(i)) == Some("t") && is(s.get(i + 1), &Kind::Punct('('));
            let method_or_def =
                i > 0 && (is(s.get(i - 1), &Kind::Punct('.')) || ident(s.get(i - 1)) == Some("function"));
            if !call || method_or_def {
                continue;
            }
            let parts = match s.get(i + 2).map(|t| &t.kind) {
                Some(Kind::Str(k)) => vec![k.clone()],
                Some(Kind::Tpl(parts)) => parts.clone(),
                _ => continue, // a computed key: nothing to check here
            };
            out.push(KeyUse { parts, at: format!("{file}:{}", s[i].line) });
        }
    }
    out
}

/// Whether `key` fits `parts`, each hole standing for one or more characters.
fn key_matches(key: &str, parts: &[String]) -> bool {
    let Some((first, rest_parts)) = parts.split_first() else { return false };
    let Some(rest) = key.strip_prefix(first.as_str()) else { return false };
    if rest_parts.is_empty() {
        return rest.is_empty();
    }
    if rest.is_empty() {
        return false; // a hole is never empty
    }
    rest.char_indices().skip(1).map(|(n, _)| n).chain([rest.len()]).any(|n| key_matches(&rest[n..], rest_parts))
}

/// Uses no table has, and keys no use needs.
fn key_problems(keys: &BTreeSet<String>, uses: &[KeyUse]) -> Vec<String> {
    let mut problems = Vec::new();
    for u in uses {
        if !keys.iter().any(|k| key_matches(k, &u.parts)) {
            problems.push(format!("{}: t('{}') has no key in the language tables", u.at, u.parts.join("${…}")));
        }
    }
    for k in keys {
        if !uses.iter().any(|u| key_matches(k, &u.parts)) {
            problems.push(format!("js/lang: '{k}' is never used by a t(...) call"));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Literal text

fn shows_words(text: &str) -> bool {
    text.chars().any(char::is_alphabetic) && !ALLOWED_TEXT.contains(&text.trim())
}

/// Literal text a file shows without t().
fn literal_text(file: &str, src: &str) -> Vec<String> {
    let (mut out, mut toasts) = (Vec::new(), Vec::new());
    let mut flag = |t: &Tok, how: &str| {
        if let Some(text) = literal(t).filter(|x| shows_words(x)) {
            out.push(format!("{file}:{}: {how} shows literal text {text:?} (use t('key'))", t.line));
        }
    };
    for s in lex(src) {
        for i in 0..s.len() {
            // Calls whose (some) arguments are shown.
            let shown_args = match ident(s.get(i)) {
                Some("h") => 2..usize::MAX,
                Some("toast") => 0..1,
                Some("pageHead" | "emptyState") => 0..usize::MAX,
                Some("setMsg") => 1..2,
                Some("dl") => 0..1,
                _ => 0..0,
            };
            let is_call = is(s.get(i + 1), &Kind::Punct('('))
                && !(i > 0 && (is(s.get(i - 1), &Kind::Punct('.')) || ident(s.get(i - 1)) == Some("function")));
            // toast(() => t(...)): a toast outlives its page and is said again after a language switch.
            if is_call && ident(s.get(i)) == Some("toast") {
                let arrow = [Kind::Punct('('), Kind::Punct(')'), Kind::Punct('='), Kind::Punct('>')];
                if !arrow.iter().enumerate().all(|(n, k)| is(s.get(i + 2 + n), k)) {
                    toasts.push(format!("{file}:{}: toast() takes a function, toast(() => t('key'))", s[i].line));
                }
            }
            if is_call && !shown_args.is_empty() {
                for (n, arg) in call_args(&s, i + 1).into_iter().enumerate() {
                    if !shown_args.contains(&n) {
                        continue;
                    }
                    // Shown: literals in the argument or in arrays in it (children, dl pairs),
                    // not those inside a nested call's parentheses or an object.
                    let mut depth = 0;
                    for j in arg {
                        match s[j].kind {
                            Kind::Punct('(' | '{') => depth += 1,
                            Kind::Punct(')' | '}') => depth -= 1,
                            _ if depth == 0 => {
                                // A literal compared with something is not shown.
                                let compared = [s.get(j.wrapping_sub(1)), s.get(j + 1)]
                                    .iter()
                                    .any(|t| is(*t, &Kind::Punct('=')) || is(*t, &Kind::Punct('!')));
                                if !compared {
                                    flag(&s[j], &format!("an argument of {}()", ident(s.get(i)).unwrap_or("")));
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            // { title: 'Text' }
            let prop = match s.get(i).map(|t| &t.kind) {
                Some(Kind::Ident(k) | Kind::Str(k)) => Some(k.as_str()),
                _ => None,
            };
            if prop.is_some_and(|k| VISIBLE_PROPS.contains(&k))
                && is(s.get(i + 1), &Kind::Punct(':'))
                && s.get(i + 3).is_none_or(|t| matches!(t.kind, Kind::Punct(',' | '}' | ')')))
            {
                if let Some(v) = s.get(i + 2) {
                    flag(v, &format!("property {}", prop.unwrap_or("")));
                }
            }
            // el.textContent = 'Text'
            if is(s.get(i), &Kind::Punct('.'))
                && ident(s.get(i + 1)).is_some_and(|k| VISIBLE_ASSIGN.contains(&k))
                && is(s.get(i + 2), &Kind::Punct('='))
                && !is(s.get(i + 3), &Kind::Punct('='))
            {
                if let Some(v) = s.get(i + 3) {
                    flag(v, &format!(".{} =", ident(s.get(i + 1)).unwrap_or("")));
                }
            }
        }
    }
    out.extend(toasts);
    out
}

// ---------------------------------------------------------------------------------------------
// The console's own files

/// The embedded JavaScript: (path under /ui/, text).
fn js_files() -> Vec<(String, String)> {
    ASSETS
        .iter()
        .filter(|a| a.path.ends_with(".js"))
        .map(|a| (a.path.to_string(), String::from_utf8_lossy(a.body).into_owned()))
        .collect()
}

/// i18n.js and the language tables: the files exempt from the literal-text check.
fn is_i18n(path: &str) -> bool {
    path == "js/i18n.js" || path.starts_with("js/lang/")
}

fn i18n_sources() -> Vec<(String, String)> {
    js_files().into_iter().filter(|(p, _)| is_i18n(p)).collect()
}

fn route_sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap_or_default()))
        .collect();
    out.sort();
    out
}

fn report(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

#[test]
fn every_js_file_of_the_console_is_embedded() {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, base, out);
            } else if p.extension().is_some_and(|x| x == "js") {
                out.push(p.strip_prefix(base).unwrap_or(&p).to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    let mut on_disk = Vec::new();
    walk(&ui.join("js"), &ui, &mut on_disk);
    let embedded: BTreeSet<String> = js_files().into_iter().map(|(p, _)| p).collect();
    let missing: Vec<&String> = on_disk.iter().filter(|p| !embedded.contains(*p)).collect();
    assert!(missing.is_empty(), "not in routes::ui::ASSETS (so never served): {missing:?}");
}

#[test]
fn every_language_table_has_the_same_keys_and_placeholders() {
    let (tables, offered) = tables(&i18n_sources());
    assert!(
        tables.len() >= 2 && tables.values().all(|t| t.len() > 100),
        "the tables were not found in js/lang/ (through i18n.js): {:?}",
        tables.keys()
    );
    report("the language tables disagree", &table_problems(&tables, &offered));
}

#[test]
fn every_key_the_js_uses_is_in_the_tables_and_every_key_is_used() {
    let (tables, _) = tables(&i18n_sources());
    let keys: BTreeSet<String> = tables.values().flatten().map(|(k, _, _)| k.clone()).collect();
    let uses: Vec<KeyUse> = js_files().iter().flat_map(|(p, s)| key_uses(p, s)).collect();
    assert!(uses.len() > 100, "only {} t(...) calls found", uses.len());
    report("i18n keys", &key_problems(&keys, &uses));
}

#[test]
fn no_view_shows_literal_text() {
    let problems: Vec<String> =
        js_files().iter().filter(|(p, _)| !is_i18n(p)).flat_map(|(p, s)| literal_text(p, s)).collect();
    report("text that does not go through i18n", &problems);
}

#[test]
fn the_js_calls_only_routes_the_control_api_serves() {
    let routes = served_routes(&route_sources());
    for (path, method) in [("/api/v1/approvals/{id}/decision", "POST"), ("/api/v1/grants/{id}", "DELETE")] {
        assert!(
            routes.get(path).is_some_and(|m| m.contains(method)),
            "route extraction missed {method} {path}: {routes:?}"
        );
    }
    let calls: Vec<ApiCall> = js_files().iter().flat_map(|(p, s)| api_calls(p, s)).collect();
    assert!(calls.len() >= 10, "only {} API calls found in the JS: {calls:?}", calls.len());
    report("API calls without a route", &route_problems(&calls, &routes));
}

// The checks themselves, on known violations.

#[test]
fn the_lexer_knows_strings_templates_regexes_and_comments() {
    let s = lex("const a = /['`]/g; // t('no')\nx = `a${t('k.x')}b${`c${d}`}` + \"q\\\"\" /* t('no') */;");
    let main: Vec<&Kind> = s[0].iter().map(|t| &t.kind).collect();
    assert!(main.contains(&&Kind::Tpl(vec!["a".into(), "b".into(), "".into()])), "{main:?}");
    assert!(main.contains(&&Kind::Str("q\"".into())), "{main:?}");
    assert_eq!(s[0].last().map(|t| t.line), Some(2));
    let uses = key_uses("x.js", "const a = /['`]/g; // t('no')\nx = `a${t('k.x')}b` /* t('no') */;");
    assert_eq!(uses.iter().map(|u| u.parts.concat()).collect::<Vec<_>>(), ["k.x"]);
}

#[test]
fn a_missing_unused_or_untranslated_key_is_reported() {
    let src = "const en = { 'a.one': 'One {n}', 'a.two': 'Two', 'b.x': 'X' };\n\
               const zh = { 'a.one': '一', 'a.two': '二', 'a.two': '二' };\n\
               export const LANGS = [{ code: 'en', label: 'English' }, { code: 'zh-CN', label: '中文' }];\n\
               const TABLES = { en, 'zh-CN': zh };";
    let (tables, offered) = tables(&[("i18n.js".to_string(), src.to_string())]);
    let p = table_problems(&tables, &offered).join("\n");
    assert!(p.contains("'b.x' is missing from the zh-CN table"), "{p}");
    assert!(p.contains("'a.two' twice in the zh-CN table"), "{p}");
    assert!(p.contains("'a.one': placeholders"), "{p}");

    let keys: BTreeSet<String> = ["a.one", "a.two", "b.x", "c.never"].map(String::from).into();
    let uses = key_uses("v.js", "t('a.one'); t(`a.${k}`); t('b.x'); t('bogus.key'); t(`nope.${k}`); t(k);");
    let p = key_problems(&keys, &uses).join("\n");
    assert!(p.contains("v.js:1: t('bogus.key') has no key"), "{p}");
    assert!(p.contains("t('nope.${…}') has no key"), "{p}");
    assert!(p.contains("'c.never' is never used"), "{p}");
    assert!(!p.contains("'a.two'"), "a.two is used through t(`a.${{k}}`): {p}");
}

#[test]
fn literal_text_is_reported() {
    let src = "h('p', {}, 'Allowed once'); toast(`Saved ${n} items`, 'error'); h('b', { title: 'Tip' }, t('k'));\n\
               el.textContent = 'Oops'; h('i', {}, x === 'allow' ? t('a') : '', `@${a}`, 'ClawButler', [t('b'), 'Late']);\n\
               dl([[t('field.ms'), `${n} ms`], [t('x'), h('code', { class: 'mono' }, v)], [t('y'), a.join(' or ')]]);\n\
               toast(() => t('ok')); toast(t('said once'));";
    let p = literal_text("v.js", src);
    assert_eq!(p.len(), 8, "{p:#?}");
    for want in [
        "\"Allowed once\"",
        "\"Saved  items\"",
        "\"Tip\"",
        "\"Oops\"",
        "\"Late\"",
        "v.js:3: an argument of dl() shows literal text \" ms\"",
        "v.js:1: toast() takes a function",
        "v.js:4: toast() takes a function",
    ] {
        assert!(p.iter().any(|x| x.contains(want)), "{want} not reported: {p:#?}");
    }
}

#[test]
fn a_call_to_a_route_that_is_not_served_is_reported() {
    let rust = "Router::new().route(\"/api/v1/grants\", get(list).post(create))\n\
                .route(\"/api/v1/grants/{id}\", get(one).delete(revoke))"
        .to_string();
    let routes = served_routes(&[("grants.rs".into(), rust)]);
    let js = "get(`/api/v1/grants${query(q)}`); del(`/api/v1/grants/${id}`);\n\
              post(`/api/v1/grants/${encodeURIComponent(id)}/revoke`, {}); post(`/api/v1/grants/${id}`);\n\
              listPage(root, ctx, { path: '/api/v1/grants?x=1' }); api('PUT', '/api/v1/grants');";
    let calls = api_calls("g.js", js);
    assert_eq!(calls.len(), 6, "{calls:?}");
    let p = route_problems(&calls, &routes);
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(p[0].contains("g.js:2: POST /api/v1/grants/{}/revoke is not a route"), "{p:#?}");
    assert!(p[1].contains("g.js:2: POST /api/v1/grants/{}: the route serves only"), "{p:#?}");
    assert!(p[2].contains("g.js:3: PUT /api/v1/grants: the route serves only"), "{p:#?}");
}
