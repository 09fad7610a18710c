//! Checks over the web console's JavaScript, as embedded in the binary (`routes::ui::ASSETS`):
//! - every language table in `i18n.js` has the same keys, with the same `{placeholders}`, no
//!   key twice and no empty text;
//! - every `t('key')` names a key the tables have (a template key such as `` t(`status.${s}`) ``
//!   must match at least one), and every key in the tables is used by some `t(...)`;
//! - a toast is given as `toast(() => t(...))`, so it can follow a language switch;
//! - no literal text is shown: children of `h()`, the text of `toast()`, `emptyState()`,
//!   `pageHead()` and `setMsg()`, the pairs of `dl()`, visible properties (`title:`, `placeholder:`, `'aria-label':`,
//!   `hint:`, `label:`, `text:`, `confirm:`, `alt:`) and `.textContent =` are never a string
//!   literal with letters in it (i18n.js, the tables themselves, is exempt);
//! - every `'/api/v1/...'` the JS calls is a route `src/routes/*.rs` serves, with that method.
//!
//! Textual on purpose, with no JS parser: a small lexer that knows strings, template literals,
//! regular expressions and comments is enough for code written in the console's style. The
//! last tests feed each check a known violation, so none of them can pass by seeing nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::routes::ui::ASSETS;

/// Literal text the console may show as is: the product's name and the token prefix.
const ALLOWED_TEXT: &[&str] = &["ClawButler", "cbt_…"];

/// Object properties whose value is shown to the user.
const VISIBLE_PROPS: &[&str] = &["title", "placeholder", "aria-label", "alt", "hint", "label", "text", "confirm"];

/// DOM properties that, assigned, show text.
const VISIBLE_ASSIGN: &[&str] = &["textContent", "innerText", "title", "placeholder"];

const HTTP_METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Ident(String),
    /// A '...' or "..." string, unescaped.
    Str(String),
    /// A template literal: the literal text around its `${...}` holes (holes + 1 parts).
    Tpl(Vec<String>),
    Punct(char),
    /// Numbers and regular expression literals.
    Other,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    line: usize,
}

/// A token stream; a template's holes are lexed into streams of their own.
type Stream = Vec<Tok>;

struct Lexer<'a> {
    s: &'a [char],
    i: usize,
    line: usize,
    out: Stream,
    holes: Vec<Stream>,
}

impl<'a> Lexer<'a> {
    fn peek(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn push(&mut self, kind: Kind, line: usize) {
        self.out.push(Tok { kind, line });
    }

    /// Lex to the end, or (`in_hole`) up to and including the `}` that closes a `${` hole.
    fn run(&mut self, in_hole: bool) {
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            let line = self.line;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '/' if self.peek(1) == Some('/') => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                '/' if self.peek(1) == Some('*') => {
                    self.i += 2;
                    while self.peek(0).is_some() && !(self.peek(0) == Some('*') && self.peek(1) == Some('/')) {
                        self.bump();
                    }
                    self.i += 2;
                }
                '/' if self.regex_allowed() => {
                    self.regex();
                    self.push(Kind::Other, line);
                }
                '\'' | '"' => {
                    self.bump();
                    let v = self.string(c);
                    self.push(Kind::Str(v), line);
                }
                '`' => {
                    self.bump();
                    let parts = self.template();
                    self.push(Kind::Tpl(parts), line);
                }
                c if c.is_alphabetic() || c == '_' || c == '$' => {
                    let mut w = String::new();
                    while let Some(c) = self.peek(0).filter(|c| c.is_alphanumeric() || *c == '_' || *c == '$') {
                        w.push(c);
                        self.bump();
                    }
                    self.push(Kind::Ident(w), line);
                }
                c if c.is_ascii_digit() => {
                    while self.peek(0).is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_') {
                        self.bump();
                    }
                    self.push(Kind::Other, line);
                }
                '}' if in_hole && depth == 0 => {
                    self.bump();
                    return;
                }
                _ => {
                    if c == '{' {
                        depth += 1;
                    } else if c == '}' {
                        depth = depth.saturating_sub(1);
                    }
                    self.bump();
                    self.push(Kind::Punct(c), line);
                }
            }
        }
    }

    /// Whether a `/` here starts a regular expression (not a division): the usual rule of
    /// thumb, by the token before it.
    fn regex_allowed(&self) -> bool {
        match self.out.last().map(|t| &t.kind) {
            None => true,
            Some(Kind::Punct(p)) => "(,=:[!&|?{};+-*%<>~^".contains(*p),
            Some(Kind::Ident(w)) => {
                matches!(w.as_str(), "return" | "typeof" | "case" | "in" | "of" | "delete" | "void" | "new" | "else")
            }
            _ => false,
        }
    }

    fn regex(&mut self) {
        self.bump();
        let mut class = false;
        while let Some(c) = self.bump() {
            match c {
                '\\' => {
                    self.bump();
                }
                '[' => class = true,
                ']' => class = false,
                '/' if !class => break,
                '\n' => break,
                _ => {}
            }
        }
        while self.peek(0).is_some_and(|c| c.is_alphabetic()) {
            self.bump();
        }
    }

    fn string(&mut self, quote: char) -> String {
        let mut v = String::new();
        while let Some(c) = self.bump() {
            match c {
                '\\' => match self.bump() {
                    Some('n') => v.push('\n'),
                    Some(e) => v.push(e),
                    None => break,
                },
                c if c == quote => break,
                c => v.push(c),
            }
        }
        v
    }

    /// After the opening backtick: the literal parts; each hole goes to `self.holes`.
    fn template(&mut self) -> Vec<String> {
        let mut parts = vec![String::new()];
        while let Some(c) = self.bump() {
            match c {
                '`' => break,
                '\\' => {
                    if let (Some(e), Some(last)) = (self.bump(), parts.last_mut()) {
                        last.push(e);
                    }
                }
                '$' if self.peek(0) == Some('{') => {
                    self.bump();
                    let mut hole = Lexer { s: self.s, i: self.i, line: self.line, out: Vec::new(), holes: Vec::new() };
                    hole.run(true);
                    self.i = hole.i;
                    self.line = hole.line;
                    self.holes.push(hole.out);
                    self.holes.extend(hole.holes);
                    parts.push(String::new());
                }
                c => {
                    if let Some(last) = parts.last_mut() {
                        last.push(c);
                    }
                }
            }
        }
        parts
    }
}

/// A file's token streams: the file itself first, then every template hole.
fn lex(src: &str) -> Vec<Stream> {
    let chars: Vec<char> = src.chars().collect();
    let mut l = Lexer { s: &chars, i: 0, line: 1, out: Vec::new(), holes: Vec::new() };
    l.run(false);
    let mut all = vec![l.out];
    all.extend(l.holes);
    all
}

fn is(t: Option<&Tok>, k: &Kind) -> bool {
    t.is_some_and(|t| &t.kind == k)
}

fn ident(t: Option<&Tok>) -> Option<&str> {
    match t.map(|t| &t.kind) {
        Some(Kind::Ident(w)) => Some(w),
        _ => None,
    }
}

/// The literal text of a string or template token (template holes left out).
fn literal(t: &Tok) -> Option<String> {
    match &t.kind {
        Kind::Str(s) => Some(s.clone()),
        Kind::Tpl(parts) => Some(parts.concat()),
        _ => None,
    }
}

/// The index of the bracket closing the one at `open`.
fn closing(s: &[Tok], open: usize) -> usize {
    let mut depth = 0i32;
    for (i, t) in s.iter().enumerate().skip(open) {
        match t.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// The arguments of the call whose `(` is at `open`, as index ranges into `s`.
fn call_args(s: &[Tok], open: usize) -> Vec<std::ops::Range<usize>> {
    let end = closing(s, open);
    let mut args = Vec::new();
    let (mut depth, mut start) = (0i32, open + 1);
    for (i, t) in s.iter().enumerate().take(end).skip(open + 1) {
        match t.kind {
            Kind::Punct('(' | '[' | '{') => depth += 1,
            Kind::Punct(')' | ']' | '}') => depth -= 1,
            Kind::Punct(',') if depth == 0 => {
                args.push(start..i);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < end {
        args.push(start..end);
    }
    args
}

// ---------------------------------------------------------------------------------------------
// Language tables

/// One table: its keys in order (duplicates kept, to be reported), with text and line.
type Table = Vec<(String, String, usize)>;

/// The tables of i18n.js by language code, and the codes `LANGS` offers.
fn tables(src: &str) -> (BTreeMap<String, Table>, BTreeSet<String>) {
    let s = &lex(src)[0];
    let mut objects: BTreeMap<String, Table> = BTreeMap::new();
    let mut codes: Vec<(String, String)> = Vec::new();
    let mut offered = BTreeSet::new();
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
                        table.push((k.clone(), text, s[j].line));
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
    let by_code = codes.into_iter().filter_map(|(code, name)| objects.get(&name).map(|t| (code, t.clone()))).collect();
    (by_code, offered)
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
        for (k, text, line) in table {
            if !seen.insert(k.as_str()) {
                problems.push(format!("i18n.js:{line}: '{k}' twice in the {code} table"));
            }
            if text.trim().is_empty() {
                problems.push(format!("i18n.js:{line}: '{k}' has no text in {code}"));
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
            problems.push(format!("{}: t('{}') has no key in i18n.js", u.at, u.parts.join("${…}")));
        }
    }
    for k in keys {
        if !uses.iter().any(|u| key_matches(k, &u.parts)) {
            problems.push(format!("i18n.js: '{k}' is never used by a t(...) call"));
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
// Routes

/// `/api/...` routes the crate serves, with their methods (upper case), from `.route("...",
/// get(..).post(..))` calls in `src/routes/*.rs`.
fn served_routes(rust_sources: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
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
struct ApiCall {
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

fn api_calls(file: &str, src: &str) -> Vec<ApiCall> {
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

fn route_problems(calls: &[ApiCall], routes: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
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

fn i18n_src() -> String {
    js_files().into_iter().find(|(p, _)| p == "js/i18n.js").map(|(_, s)| s).unwrap_or_default()
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
    let (tables, offered) = tables(&i18n_src());
    assert!(
        tables.len() >= 2 && tables.values().all(|t| t.len() > 100),
        "the tables were not found in i18n.js: {:?}",
        tables.keys()
    );
    report("i18n.js tables disagree", &table_problems(&tables, &offered));
}

#[test]
fn every_key_the_js_uses_is_in_the_tables_and_every_key_is_used() {
    let (tables, _) = tables(&i18n_src());
    let keys: BTreeSet<String> = tables.values().flatten().map(|(k, _, _)| k.clone()).collect();
    let uses: Vec<KeyUse> = js_files().iter().flat_map(|(p, s)| key_uses(p, s)).collect();
    assert!(uses.len() > 100, "only {} t(...) calls found", uses.len());
    report("i18n keys", &key_problems(&keys, &uses));
}

#[test]
fn no_view_shows_literal_text() {
    let problems: Vec<String> =
        js_files().iter().filter(|(p, _)| p != "js/i18n.js").flat_map(|(p, s)| literal_text(p, s)).collect();
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
    let (tables, offered) = tables(src);
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
