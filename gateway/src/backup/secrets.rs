//! Secrets in a package, by intent (`docs/config-safety.md`, "Intents"):
//!
//! - `backup`: every value `config.get` shows as `__OPENCLAW_REDACTED__` is filled from the
//!   gateway's own config file (`[gateway] config_file`) at the same path; what cannot be
//!   filled stays redacted and is listed as missing.
//! - `clone`: every secret becomes a reference `__CBPKG_SECRET__:<path>`, filled on import.
//! - `share`: secrets, tokens, personal paths and identities are removed, then the bytes are
//!   scanned for anything that still looks like one (a hit refuses the package).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::config_safety::classify::{secret_key, REDACTED};

/// The prefix of a clone package's secret reference; the rest is the config path.
pub const SECRET_REF: &str = "__CBPKG_SECRET__:";

fn walk_mut(v: &mut Value, path: &mut Vec<String>, f: &mut dyn FnMut(&[String], &mut Value)) {
    match v {
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                path.push(k.clone());
                walk_mut(x, path, f);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                path.push(i.to_string());
                walk_mut(x, path, f);
                path.pop();
            }
        }
        _ => f(path, v),
    }
}

fn at<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, k| match v {
        Value::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => v.get(k),
    })
}

fn is_secret_leaf(path: &[String], v: &Value) -> bool {
    v.as_str() == Some(REDACTED) || (v.is_string() && path.last().is_some_and(|k| secret_key(k)))
}

/// `backup`: fill redacted values from `file` (the gateway's config file). Returns the
/// filled paths, the missing ones, and the secret values (for masking and scans).
pub fn fill(config: &mut Value, file: Option<&Value>) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut filled, mut missing, mut values) = (Vec::new(), Vec::new(), Vec::new());
    walk_mut(config, &mut Vec::new(), &mut |path, v| {
        if v.as_str() != Some(REDACTED) {
            if let (true, Some(s)) = (is_secret_leaf(path, v), v.as_str()) {
                values.push(s.to_string());
            }
            return;
        }
        match file.and_then(|f| at(f, path)).filter(|x| x.as_str() != Some(REDACTED)) {
            Some(real) => {
                if let Some(s) = real.as_str() {
                    values.push(s.to_string());
                }
                *v = real.clone();
                filled.push(path.join("."));
            }
            None => missing.push(path.join(".")),
        }
    });
    (filled, missing, values)
}

/// `clone`: every secret becomes a reference. Returns the referenced paths.
pub fn to_references(config: &mut Value) -> Vec<String> {
    let mut refs = Vec::new();
    walk_mut(config, &mut Vec::new(), &mut |path, v| {
        if is_secret_leaf(path, v) {
            let p = path.join(".");
            *v = Value::String(format!("{SECRET_REF}{p}"));
            refs.push(p);
        }
    });
    refs
}

/// Fill a clone's references from `given` (`{path: value}`); returns the paths still
/// unfilled (they stay references and are never written to a gateway).
pub fn resolve_references(config: &mut Value, given: &Map<String, Value>) -> Vec<String> {
    let mut open = Vec::new();
    walk_mut(config, &mut Vec::new(), &mut |_, v| {
        let Some(p) = v.as_str().and_then(|s| s.strip_prefix(SECRET_REF)).map(str::to_string) else { return };
        match given.get(&p).filter(|x| x.is_string()) {
            Some(x) => *v = x.clone(),
            None => open.push(p),
        }
    });
    open
}

/// Keys a `share` package drops wherever they are: personal paths and identities.
const PERSONAL_KEYS: [&str; 7] = ["workspace", "cwd", "agentDir", "identity", "avatar", "allowFrom", "peer"];
/// Top-level sections a `share` package drops: they hold accounts, ids and credentials.
const PERSONAL_SECTIONS: [&str; 4] = ["channels", "auth", "secrets", "talk"];
/// Workspace files a `share` package drops: they describe the user and their memory.
pub const PERSONAL_FILES: [&str; 3] = ["USER.md", "IDENTITY.md", "MEMORY.md"];

fn looks_personal_path(s: &str) -> bool {
    s.starts_with("/home/")
        || s.starts_with("/Users/")
        || s.starts_with("/root")
        || s.starts_with("~/")
        || s.starts_with("/tmp/")
        || (s.len() > 2 && s.as_bytes()[1] == b':' && s.contains('\\'))
}

/// `share`: remove secrets, personal paths and identities. Returns what was removed (paths).
pub fn strip_for_share(config: &mut Value) -> Vec<String> {
    let mut removed = Vec::new();
    if let Some(o) = config.as_object_mut() {
        for s in PERSONAL_SECTIONS {
            if o.remove(s).is_some() {
                removed.push(s.to_string());
            }
        }
    }
    strip(config, &mut Vec::new(), &mut removed);
    removed
}

fn strip(v: &mut Value, path: &mut Vec<String>, removed: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            let drop: Vec<String> = o
                .iter()
                .filter(|(k, x)| {
                    PERSONAL_KEYS.contains(&k.as_str())
                        || (x.is_string() && (secret_key(k) || x.as_str() == Some(REDACTED)))
                        || x.as_str().is_some_and(looks_personal_path)
                        || (k.as_str() == "env" && x.is_object())
                        || (k.as_str() == "headers" && x.is_object())
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in drop {
                o.remove(&k);
                path.push(k);
                removed.push(path.join("."));
                path.pop();
            }
            for (k, x) in o.iter_mut() {
                path.push(k.clone());
                strip(x, path, removed);
                path.pop();
            }
        }
        Value::Array(a) => {
            a.retain(|x| !x.as_str().is_some_and(|s| looks_personal_path(s) || s == REDACTED));
            for (i, x) in a.iter_mut().enumerate() {
                path.push(i.to_string());
                strip(x, path, removed);
                path.pop();
            }
        }
        _ => {}
    }
}

/// What a scan found: the kind and where (never the value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub at: String,
}

/// Token shapes that must never be published: `(kind, prefix, minimum length after it)`.
const TOKEN_SHAPES: [(&str, &str, usize); 8] = [
    ("openai-style key", "sk-", 16),
    ("anthropic key", "sk-ant-", 16),
    ("github token", "ghp_", 20),
    ("github token", "github_pat_", 20),
    ("slack token", "xoxb-", 10),
    ("slack token", "xoxp-", 10),
    ("aws access key", "AKIA", 16),
    ("bearer credential", "Bearer ", 16),
];

fn token_at(s: &str) -> Option<&'static str> {
    TOKEN_SHAPES.iter().find_map(|(kind, prefix, min)| {
        s.match_indices(prefix).find_map(|(i, _)| {
            let rest = &s[i + prefix.len()..];
            let run = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').count();
            (run >= *min).then_some(*kind)
        })
    })
}

/// Scan every string of `payload` (config, cron, files) for known secret values, token
/// shapes, redaction markers, references and personal paths. Empty = publishable.
pub fn scan(payload: &Value, known: &BTreeSet<String>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut p = payload.clone();
    walk_mut(&mut p, &mut Vec::new(), &mut |path, v| {
        let Some(s) = v.as_str() else { return };
        let at = path.join(".");
        let kind = if known.iter().any(|k| k.len() >= 4 && s.contains(k.as_str())) {
            Some("a secret value of this gateway")
        } else if s.contains(REDACTED) || s.contains(SECRET_REF) {
            Some("a secret placeholder")
        } else if looks_personal_path(s) {
            Some("a personal path")
        } else {
            token_at(s)
        };
        if let Some(kind) = kind {
            out.push(Finding { kind, at });
        }
    });
    // Keys can carry values too (e.g. a map keyed by a path).
    let text = payload.to_string();
    for k in known.iter().filter(|k| k.len() >= 4) {
        if text.contains(k.as_str()) && !out.iter().any(|f| f.kind == "a secret value of this gateway") {
            out.push(Finding { kind: "a secret value of this gateway", at: "(a key)".into() });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live() -> Value {
        json!({"models": {"providers": {"direct": {"apiKey": REDACTED, "baseUrl": "http://x/v1"}}},
               "mcp": {"servers": {"files": {"command": "npx", "env": {"FILES_TOKEN": REDACTED}}}},
               "agents": {"entries": {"main": {"workspace": "/home/ann/ws", "identity": {"name": "Ann's bot"},
                                               "model": "direct/m"}}},
               "channels": {"telegram": {"botToken": REDACTED}}})
    }

    fn file() -> Value {
        json!({"models": {"providers": {"direct": {"apiKey": "sk-planted-direct-0123456789"}}},
               "mcp": {"servers": {"files": {"env": {"FILES_TOKEN": "planted-mcp-token"}}}}})
    }

    #[test]
    fn backup_fills_from_the_config_file_and_names_what_is_missing() {
        let mut c = live();
        let (filled, missing, values) = fill(&mut c, Some(&file()));
        assert_eq!(filled, ["models.providers.direct.apiKey", "mcp.servers.files.env.FILES_TOKEN"]);
        assert_eq!(missing, ["channels.telegram.botToken"]);
        assert_eq!(c["models"]["providers"]["direct"]["apiKey"], "sk-planted-direct-0123456789");
        assert_eq!(values.len(), 2);
        let mut c = live();
        let (filled, missing, _) = fill(&mut c, None);
        assert_eq!((filled.len(), missing.len()), (0, 3), "without the file every secret is missing");
    }

    #[test]
    fn clone_references_round_trip() {
        let mut c = live();
        let refs = to_references(&mut c);
        assert_eq!(refs.len(), 3);
        assert_eq!(c["models"]["providers"]["direct"]["apiKey"], "__CBPKG_SECRET__:models.providers.direct.apiKey");
        let given = json!({"models.providers.direct.apiKey": "sk-new"}).as_object().cloned().unwrap_or_default();
        let open = resolve_references(&mut c, &given);
        assert_eq!(c["models"]["providers"]["direct"]["apiKey"], "sk-new");
        assert_eq!(open.len(), 2);
    }

    #[test]
    fn share_strips_and_the_scan_catches_what_is_left() {
        let mut c = live();
        strip_for_share(&mut c);
        let known: BTreeSet<String> = ["sk-planted-direct-0123456789".to_string()].into();
        assert_eq!(scan(&c, &known), vec![], "{c}");
        assert!(c.get("channels").is_none() && c["agents"]["entries"]["main"].get("workspace").is_none());
        assert_eq!(c["agents"]["entries"]["main"]["model"], "direct/m");
        let leaked = json!({"files": {"main": {"AGENTS.md": "use key sk-planted-direct-0123456789 here"}},
                            "cron": [{"payload": {"message": "token ghp_abcdefghijklmnopqrstuvwxyz"}}],
                            "x": "/home/ann/notes"});
        let kinds: Vec<&str> = scan(&leaked, &known).iter().map(|f| f.kind).collect();
        assert_eq!(kinds, ["a secret value of this gateway", "github token", "a personal path"]);
    }
}
