//! Masking of secrets and personal data, applied before a record is written (never after).
//! Public so the proxy can scrub its own log lines with the same rules.
//!
//! Every masked value becomes `[<class>:<h>]` where `<h>` is 6 hex digits (24 bits) of a hash
//! of the value: equal values stay correlatable, the value itself is gone.
//!
//! The audit log uses the `*_salted` functions with the install's [`Salt`], so `<h>` is the
//! start of HMAC-SHA256(salt, value) and cannot be checked against guesses without the salt.
//! The unsalted functions (`<h>` = start of sha256(value)) remain for callers without a salt,
//! such as the proxy's own log lines; their hashes can be brute-forced for small value spaces.

use std::sync::OnceLock;

mod clean;

use regex::{Regex, RegexSet};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use crate::salt::{Salt, SALT_FILE};

/// One text rule: pattern, class label, and how much of the match is kept as a visible prefix.
struct Rule {
    class: &'static str,
    re: Regex,
    /// Capture group holding the secret part (0 = whole match); text outside it is kept.
    group: usize,
    /// Extra check on the matched secret (Luhn for cards, boundaries for phones).
    check: fn(&str, &str, usize, usize) -> bool,
}

fn always(_: &str, _: &str, _: usize, _: usize) -> bool {
    true
}

/// Card numbers: 13-19 digits with optional single spaces/dashes, passing Luhn, and not glued
/// to other digits or letters.
fn card_ok(text: &str, m: &str, start: usize, end: usize) -> bool {
    let digits: Vec<u32> = m.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || !standalone(text, start, end) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.checked_rem(10) == Some(0)
}

/// Words after "Bearer"/"Basic" in prose ("basic functionality") are not credentials: real
/// tokens carry a digit or base64 padding.
fn token_ok(_: &str, m: &str, _: usize, _: usize) -> bool {
    m.bytes().any(|b| b.is_ascii_digit() || b == b'=')
}

fn phone_ok(text: &str, m: &str, start: usize, end: usize) -> bool {
    let n = m.chars().filter(char::is_ascii_digit).count();
    (8..=15).contains(&n) && standalone(text, start, end)
}

/// The match is not part of a longer word/number (the regex crate has no look-around).
fn standalone(text: &str, start: usize, end: usize) -> bool {
    let glued = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '+';
    let before = text[..start].chars().next_back().is_some_and(glued);
    let after = text[end..].chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    !before && !after
}

const PATTERNS: &[(&str, &str, usize)] = &[
    ("private_key", r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----", 0),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", 0),
    ("apikey", r"\bsk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{16,}", 0),
    ("apikey", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0),
    ("apikey", r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}", 0),
    ("apikey", r"\bxox[abprs]-[A-Za-z0-9-]{10,}", 0),
    ("apikey", r"\bAIza[0-9A-Za-z_-]{35}", 0),
    ("token", r"(?i)\b(?:bearer|basic)\s+([A-Za-z0-9._~+/=-]{8,})", 1),
    (
        "secret",
        r#"(?i)\b(?:password|passwd|pwd|secret|client_secret|api[_-]?key|access[_-]?token|refresh[_-]?token|auth[_-]?token|token)"?\s*[=:]\s*"?([^\s"',;&}]{3,})"#,
        1,
    ),
    ("email", r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b", 0),
    ("card", r"\b(?:\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{1,7}|\d{4}[ -]\d{6}[ -]\d{4,5}|\d{14,19})\b", 0),
    ("phone", r"\+\d{1,3}(?:[ -]?(?:\(\d{1,4}\)|\d{1,4})){2,6}", 0),
    ("phone", r"(?:\(\d{3}\) ?|\b\d{3}[ -])\d{3}[ -]\d{4}\b", 0),
];

struct Rules {
    set: RegexSet,
    rules: Vec<Rule>,
}

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        let rules = PATTERNS
            .iter()
            .filter_map(|&(class, pat, group)| {
                // The patterns are constants covered by tests; a bad one is skipped, not fatal.
                let re = Regex::new(pat).ok()?;
                let check = match class {
                    "card" => card_ok,
                    "token" => token_ok,
                    "phone" => phone_ok,
                    _ => always,
                };
                Some(Rule { class, re, group, check })
            })
            .collect::<Vec<_>>();
        let set = RegexSet::new(rules.iter().map(|r| r.re.as_str())).unwrap_or_else(|_| RegexSet::empty());
        Rules { set, rules }
    })
}

/// `[class:6 hex]` for `value`, unsalted (sha256).
pub fn token_for(class: &str, value: &str) -> String {
    token(class, value, None)
}

/// `[class:6 hex]` for `value`, keyed with `salt` (HMAC-SHA256). This is what the log writes.
pub fn token_for_salted(class: &str, value: &str, salt: &Salt) -> String {
    token(class, value, Some(salt))
}

fn token(class: &str, value: &str, salt: Option<&Salt>) -> String {
    let d: [u8; 32] = match salt {
        Some(s) => s.mac(value.as_bytes()),
        None => Sha256::digest(value.as_bytes()).into(),
    };
    format!("[{class}:{}]", hex::encode(&d[..3]))
}

/// Mask every secret / personal datum the built-in rules recognise in free text (unsalted).
pub fn mask_text(text: &str) -> String {
    text_rules(text, None)
}

/// [`mask_text`] with hashes keyed by `salt`.
pub fn mask_text_salted(text: &str, salt: &Salt) -> String {
    text_rules(text, Some(salt))
}

fn text_rules(text: &str, salt: Option<&Salt>) -> String {
    text_rules_changed(text, salt).unwrap_or_else(|| text.to_string())
}

/// [`text_rules`], or `None` when no rule matches (most strings of a record: no copy made).
fn text_rules_changed(text: &str, salt: Option<&Salt>) -> Option<String> {
    // Most strings of a record are the same from call to call and match nothing (`clean`).
    if clean::known(text) {
        return None;
    }
    let r = rules();
    // A plain yes/no search stops at the first hit and allocates nothing, where `matches` runs
    // the overlapping search and allocates its set.
    if !r.set.is_match(text) {
        clean::remember(text);
        return None;
    }
    let hits = r.set.matches(text);
    let mut out = text.to_string();
    for i in hits.iter() {
        out = apply_rule(&r.rules[i], &out, salt);
    }
    Some(out)
}

fn apply_rule(rule: &Rule, text: &str, salt: Option<&Salt>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in rule.re.captures_iter(text) {
        let Some(m) = caps.get(rule.group) else { continue };
        if m.start() < last || !(rule.check)(text, m.as_str(), m.start(), m.end()) {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        out.push_str(&token(rule.class, m.as_str(), salt));
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

/// Field names whose whole value is a secret, compared after lower-casing and `-` -> `_`: the
/// names in the list, and any name ending in one of the suffixes.
fn is_secret_key(key: &str) -> bool {
    // Every name and suffix below fits in `TAIL` bytes. The key's last `TAIL` bytes (all of a
    // shorter key) are normalised into a stack buffer (ASCII letters fold to lower case, `-`
    // reads as `_`, every other byte, UTF-8 included, stays as it is) and matched there: the
    // compiler turns the byte-string patterns into a switch on the length and a few word
    // compares, where scanning the lists cost ~70 instructions per key, for every key of every
    // record.
    const TAIL: usize = 19;
    let k = key.as_bytes();
    let tail = k.get(k.len().saturating_sub(TAIL)..).unwrap_or_default();
    let mut buf = [0u8; TAIL];
    for (d, &b) in buf.iter_mut().zip(tail) {
        *d = if b == b'-' { b'_' } else { b.to_ascii_lowercase() };
    }
    let tail = buf.get(..tail.len()).unwrap_or_default();
    let exact = k.len() <= TAIL
        && matches!(
            tail,
            b"password"
                | b"passwd"
                | b"pwd"
                | b"passphrase"
                | b"secret"
                | b"token"
                | b"api_key"
                | b"apikey"
                | b"authorization"
                | b"proxy_authorization"
                | b"auth"
                | b"cookie"
                | b"set_cookie"
                | b"x_api_key"
                | b"private_key"
                | b"credentials"
                | b"credential"
                | b"bearer"
                | b"otp"
                | b"pin"
                | b"cvv"
                | b"ssn"
        );
    exact
        || [&b"_password"[..], b"_secret", b"_token", b"_api_key", b"_apikey", b"_private_key"]
            .iter()
            .any(|s| tail.ends_with(s))
}

/// Mask a JSON value in place: secret-named fields are replaced whole, every string (and object
/// key) goes through `mask_text`, and `extra` entries from policy obligations are applied:
/// entries starting with `$` are paths relative to `v` (`$.a.b[0].c`, `*` matches any key/index) whose value is
/// replaced whole; other entries (3+ chars) are literals replaced wherever they occur in a
/// string. Finally object keys are sorted, giving the canonical layout the record hash needs.
pub fn mask_json(v: &mut Value, extra: &[String]) {
    json_rules(v, extra, None);
}

/// [`mask_json`] with hashes keyed by `salt`.
pub fn mask_json_salted(v: &mut Value, extra: &[String], salt: &Salt) {
    json_rules(v, extra, Some(salt));
}

fn json_rules(v: &mut Value, extra: &[String], salt: Option<&Salt>) {
    for e in extra.iter().filter(|e| e.starts_with('$')) {
        let segs = parse_path(&e[1..]);
        mask_path(v, &segs, salt);
    }
    let literals = literals(extra);
    walk(v, &literals, salt);
    canonicalize(v);
}

/// Sort object keys at every depth (the canonical layout); does not mask.
pub fn canonicalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            // Most maps of a record arrive sorted (the subjects are built in key order): a
            // look is cheaper than a sort that rebuilds the map's hash table.
            if !m.keys().is_sorted() {
                m.sort_keys();
            }
            m.values_mut().for_each(canonicalize);
        }
        Value::Array(a) => a.iter_mut().for_each(canonicalize),
        _ => {}
    }
}

fn literals(extra: &[String]) -> Vec<&str> {
    extra.iter().filter(|e| !e.starts_with('$') && e.len() >= 3).map(String::as_str).collect()
}

/// `mask_text` plus replacement of the literal (non-path) entries of `extra`.
pub fn mask_text_with(text: &str, extra: &[String]) -> String {
    mask_str(text, &literals(extra), None)
}

/// [`mask_text_with`] with hashes keyed by `salt`.
pub fn mask_text_with_salted(text: &str, extra: &[String], salt: &Salt) -> String {
    mask_str(text, &literals(extra), Some(salt))
}

fn walk(v: &mut Value, literals: &[&str], salt: Option<&Salt>) {
    match v {
        Value::String(s) => {
            if let Some(masked) = mask_changed(s, literals, salt) {
                *s = masked;
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, literals, salt)),
        Value::Object(m) => {
            // Values are judged by their key as written, then the keys themselves are masked.
            for (k, val) in m.iter_mut() {
                if is_secret_key(k) && !val.is_null() {
                    *val = Value::String(whole_token("secret", val, salt));
                } else {
                    walk(val, literals, salt);
                }
            }
            // A key is rarely masked: the map is rebuilt, in order, only when one is (two keys
            // masked alike keep the later value, as inserting in order does).
            if m.keys().any(|k| mask_changed(k, literals, salt).is_some()) {
                let old = std::mem::take(m);
                for (k, val) in old {
                    m.insert(mask_str(&k, literals, salt), val);
                }
            }
        }
        _ => {}
    }
}

/// The classes of the text rules that are secrets (credentials), as opposed to personal data.
const SECRET_CLASSES: [&str; 5] = ["private_key", "jwt", "apikey", "token", "secret"];

/// What [`find_secrets`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretScan {
    /// The classes found (`private_key`, `jwt`, `apikey`, `token`, `secret`).
    pub classes: std::collections::BTreeSet<&'static str>,
    /// How many secrets were found.
    pub count: usize,
}

impl SecretScan {
    /// Whether any secret was found.
    pub fn found(&self) -> bool {
        self.count > 0
    }
}

/// Find the secrets in every string of `v`: private keys, JWTs, API keys, bearer tokens,
/// `password=...`-style values, and string values of secret-named fields (`token`,
/// `api_key`, `*_secret`, ...). The personal-data rules (e-mails, phones, cards) are left out.
/// With `replace`, each secret is replaced in place by its `[class:hash]` token. Unlike
/// [`mask_json`] this keeps key order and changes nothing but the secrets (strings stay
/// strings), so it suits data a client reads (an MCP tool's result), not records.
pub fn find_secrets(v: &mut Value, replace: bool, salt: Option<&Salt>) -> SecretScan {
    let mut scan = SecretScan::default();
    secrets_walk(v, replace, salt, &mut scan);
    scan
}

fn secrets_walk(v: &mut Value, replace: bool, salt: Option<&Salt>, scan: &mut SecretScan) {
    match v {
        Value::String(s) => {
            if let Some(masked) = secret_text(s, salt, scan) {
                if replace {
                    *s = masked;
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| secrets_walk(x, replace, salt, scan)),
        Value::Object(m) => {
            for (k, val) in m.iter_mut() {
                match val {
                    Value::String(s) if is_secret_key(k) && !s.is_empty() && !is_token_text(s) => {
                        scan.classes.insert("secret");
                        scan.count += 1;
                        if replace {
                            *s = token("secret", s, salt);
                        }
                    }
                    _ => secrets_walk(val, replace, salt, scan),
                }
            }
        }
        _ => {}
    }
}

/// Already a `[class:hash]` token (masked once): not a secret.
fn is_token_text(s: &str) -> bool {
    s.starts_with('[') && s.ends_with(']') && s.len() <= 32 && s.contains(':')
}

/// Whether `start` is just after the `[class:` of a token (`[apikey:1a2b3c]` reads like
/// `apikey: <value>` to the `secret` rule).
fn inside_token(text: &str, start: usize) -> bool {
    let before = &text[..start];
    let Some(open) = before.rfind('[') else { return false };
    let tag = &before[open + 1..];
    tag.len() <= 16
        && tag
            .strip_suffix(':')
            .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

/// The text with its secrets masked, when it has any (counted into `scan`).
fn secret_text(text: &str, salt: Option<&Salt>, scan: &mut SecretScan) -> Option<String> {
    let r = rules();
    let hits = r.set.matches(text);
    if !hits.matched_any() {
        return None;
    }
    let mut out: Option<String> = None;
    for i in hits.iter() {
        let rule = &r.rules[i];
        if !SECRET_CLASSES.contains(&rule.class) {
            continue;
        }
        let cur = out.as_deref().unwrap_or(text);
        let (next, n) = apply_rule_counted(rule, cur, salt);
        if n > 0 {
            scan.classes.insert(rule.class);
            scan.count += n;
            out = Some(next);
        }
    }
    out
}

fn apply_rule_counted(rule: &Rule, text: &str, salt: Option<&Salt>) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut n = 0;
    for caps in rule.re.captures_iter(text) {
        let Some(m) = caps.get(rule.group) else { continue };
        if m.start() < last
            || !(rule.check)(text, m.as_str(), m.start(), m.end())
            || is_token_text(m.as_str())
            || inside_token(text, m.start())
        {
            continue;
        }
        out.push_str(&text[last..m.start()]);
        out.push_str(&token(rule.class, m.as_str(), salt));
        last = m.end();
        n += 1;
    }
    out.push_str(&text[last..]);
    (out, n)
}

fn whole_token(class: &str, v: &Value, salt: Option<&Salt>) -> String {
    match v {
        Value::String(s) => token(class, s, salt),
        other => token(class, &other.to_string(), salt),
    }
}

fn mask_str(s: &str, literals: &[&str], salt: Option<&Salt>) -> String {
    mask_changed(s, literals, salt).unwrap_or_else(|| s.to_string())
}

/// `s` with the text rules and then each literal applied, or `None` when neither touches it.
fn mask_changed(s: &str, literals: &[&str], salt: Option<&Salt>) -> Option<String> {
    let mut out = text_rules_changed(s, salt);
    for lit in literals {
        let cur = out.as_deref().unwrap_or(s);
        if cur.contains(lit) {
            out = Some(cur.replace(lit, &token("masked", lit, salt)));
        }
    }
    out
}

enum Seg {
    Key(String),
    Index(usize),
    Any,
}

fn parse_path(p: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in p.split('.').filter(|s| !s.is_empty()) {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            let key = &rest[..i];
            if !key.is_empty() {
                segs.push(if key == "*" { Seg::Any } else { Seg::Key(key.to_string()) });
            }
            rest = &rest[i..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else { break };
                let idx = &stripped[..close];
                segs.push(match idx.parse::<usize>() {
                    Ok(n) => Seg::Index(n),
                    Err(_) if idx == "*" => Seg::Any,
                    Err(_) => Seg::Key(idx.trim_matches(|c| c == '"' || c == '\'').to_string()),
                });
                rest = &stripped[close + 1..];
            }
        } else {
            segs.push(if rest == "*" { Seg::Any } else { Seg::Key(rest.to_string()) });
        }
    }
    segs
}

fn mask_path(v: &mut Value, segs: &[Seg], salt: Option<&Salt>) {
    let Some((first, rest)) = segs.split_first() else {
        if !v.is_null() {
            *v = Value::String(whole_token("masked", v, salt));
        }
        return;
    };
    match (first, v) {
        (Seg::Key(k), Value::Object(m)) => {
            if let Some(x) = m.get_mut(k) {
                mask_path(x, rest, salt);
            }
        }
        (Seg::Index(i), Value::Array(a)) => {
            if let Some(x) = a.get_mut(*i) {
                mask_path(x, rest, salt);
            }
        }
        (Seg::Key(k), Value::Array(a)) => {
            if let Some(x) = k.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                mask_path(x, rest, salt);
            }
        }
        (Seg::Any, Value::Object(m)) => m.values_mut().for_each(|x| mask_path(x, rest, salt)),
        (Seg::Any, Value::Array(a)) => a.iter_mut().for_each(|x| mask_path(x, rest, salt)),
        _ => {}
    }
}
