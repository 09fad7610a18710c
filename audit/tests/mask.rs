//! Masking with realistic payloads: secrets never reach the file, equal values correlate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

mod common;

use audit::mask::{find_secrets, mask_json, mask_text, mask_text_salted, token_for, token_for_salted, Salt};
use audit::{AuditEvent, AuditSettings, RecordKind};
use serde_json::json;

const OPENAI: &str = "sk-proj-Ab3dEfGh1jKlMnOpQrStUvWxYz0123456789_abcdEFGH";
const OPENAI_OLD: &str = "sk-4kT9xQ2mLp8vR7nW3sY6uZ1aB5cD0eF8gH2iJ4kL6mN8";
const ANTHROPIC: &str = "sk-ant-api03-R2d2C3poLuke_Skywalker-0123456789abcdefABCDEF-xyzXYZ";
const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIFZ1Zk1n0x2mxQm4mQ2mGm2Z4mL8mQ9mW0mR1mT2mY3m\n-----END PRIVATE KEY-----";

#[test]
fn api_keys_tokens_and_jwts_in_free_text() {
    let text = format!(
        "export OPENAI_API_KEY={OPENAI}; curl -H 'Authorization: Bearer {OPENAI_OLD}' -H 'x-api-key: {ANTHROPIC}' --cookie session={JWT}"
    );
    let out = mask_text(&text);
    for secret in [OPENAI, OPENAI_OLD, ANTHROPIC, JWT] {
        assert!(!out.contains(secret), "{secret} leaked: {out}");
    }
    assert!(out.contains(&token_for("jwt", JWT)), "{out}");
    assert!(out.contains("export OPENAI_API_KEY=") && out.contains("curl -H"), "context kept: {out}");
}

#[test]
fn pii_and_cards() {
    let text = "Contact jane.doe+work@example.co.uk or +1 (415) 555-2671 / 415-555-2671; card 4111 1111 1111 1111, \
                amex 378282246310005, order id 4111111111111112, date 2025-01-31, port 8080";
    let out = mask_text(text);
    assert!(!out.contains("jane.doe"), "{out}");
    assert!(out.contains(&token_for("email", "jane.doe+work@example.co.uk")), "{out}");
    assert!(!out.contains("555-2671"), "{out}");
    assert!(!out.contains("4111 1111 1111 1111") && !out.contains("378282246310005"), "{out}");
    assert!(out.contains("4111111111111112"), "fails Luhn, not a card: {out}");
    assert!(out.contains("2025-01-31") && out.contains("port 8080"), "dates/numbers untouched: {out}");
}

#[test]
fn pem_private_keys() {
    let out = mask_text(&format!("key:\n{PEM}\nend"));
    assert!(!out.contains("MC4CAQAw") && out.contains("[private_key:"), "{out}");
    assert!(out.starts_with("key:\n") && out.ends_with("\nend"));
}

#[test]
fn json_fields_by_name_and_obligation_paths() {
    let mut v = json!({
        "tool": "http.post",
        "args": {
            "url": "https://api.example.com/login",
            "body": {"username": "bob", "Password": "hunter2", "client_secret": "abc123xyz", "max_tokens": 512},
            "headers": {"Authorization": format!("Bearer {OPENAI}"), "X-Api-Key": ANTHROPIC},
            "notes": "reach me at bob@corp.example",
            "path": "/home/bob/.ssh/id_ed25519"
        },
        "usage": {"input_tokens": 10, "output_tokens": 20}
    });
    mask_json(&mut v, &["$.args.url".to_string(), "/home/bob/.ssh".to_string()]);
    let s = v.to_string();
    for leak in
        ["hunter2", "abc123xyz", OPENAI, ANTHROPIC, "bob@corp.example", "api.example.com/login", "/home/bob/.ssh"]
    {
        assert!(!s.contains(leak), "{leak} leaked: {s}");
    }
    assert_eq!(v["args"]["body"]["Password"], token_for("secret", "hunter2"));
    assert_eq!(v["args"]["body"]["max_tokens"], 512, "token counts are not secrets");
    assert_eq!(v["usage"]["input_tokens"], 10);
    assert_eq!(v["args"]["body"]["username"], "bob");
    assert!(v["args"]["path"].as_str().unwrap().ends_with("/id_ed25519"));
    // Canonical layout: keys sorted.
    let keys: Vec<&String> = v["args"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["body", "headers", "notes", "path", "url"]);
}

#[test]
fn secrets_never_reach_the_segment_file_and_equal_values_correlate() {
    let tmp = tempfile::tempdir().unwrap();
    let log = common::open(tmp.path(), &AuditSettings::default());
    let ev = |i: u64| AuditEvent {
        agent: Some("ops-bot".into()),
        reason: Some(format!("user alice@example.com asked (call {i})")),
        subject: json!({"command": format!("psql postgres://admin:{}@db/prod", "S3cr3tPw"), "api_key": OPENAI}),
        details: json!({"prompt": format!("my card is 5555 5555 5555 4444 and token {JWT}")}),
        mask: vec!["S3cr3tPw".into(), "$.subject.command".into()],
        ..AuditEvent::new(RecordKind::ToolCall)
    };
    log.append(ev(1)).unwrap();
    log.append(ev(2)).unwrap();
    log.flush().unwrap();
    let file = std::fs::read_to_string(tmp.path().join("audit").join(audit::segment_name(1))).unwrap();
    for leak in ["alice@example.com", "S3cr3tPw", OPENAI, "5555 5555 5555 4444", JWT, "postgres://"] {
        assert!(!file.contains(leak), "{leak} reached disk");
    }
    let (a, b) = (log.get(1).unwrap().unwrap(), log.get(2).unwrap().unwrap());
    assert_eq!(a.subject["api_key"], b.subject["api_key"], "same secret, same short hash");
    assert!(a.reason.as_deref().unwrap().contains(&token_for_salted("email", "alice@example.com", log.mask_salt())));
    assert!(file.lines().all(|l| !l.contains("\"mask\"")), "obligation values are not stored");
    // Searching for the raw e-mail finds the masked records.
    let page =
        log.search(&audit::AuditQuery { keyword: Some("alice@example.com".into()), ..Default::default() }).unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(log.verify().ok);
}

fn email_token(log: &audit::AuditLog, seq: u64) -> String {
    let r = log.get(seq).unwrap().unwrap();
    let reason = r.reason.unwrap();
    let at = reason.find("[email:").expect("e-mail masked");
    reason[at..at + 14].to_string()
}

fn mail_event(who: &str) -> AuditEvent {
    AuditEvent { agent: Some(who.into()), reason: Some(format!("login by {who}")), ..AuditEvent::new(RecordKind::Auth) }
}

#[test]
fn masked_hashes_use_a_private_per_install_salt_that_survives_reopen() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let log = common::open(tmp.path(), &AuditSettings::default());
    let salt_path = tmp.path().join("audit").join(audit::mask::SALT_FILE);
    let mode = std::fs::metadata(&salt_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "salt is private");
    let salt_text = std::fs::read_to_string(&salt_path).unwrap();
    log.append(mail_event("carol@example.org")).unwrap();
    log.flush().unwrap();
    let first = email_token(&log, 1);
    assert_ne!(first, token_for("email", "carol@example.org"), "not the offline-guessable sha256");
    assert_eq!(first, token_for_salted("email", "carol@example.org", log.mask_salt()));
    drop(log);

    let log = common::open(tmp.path(), &AuditSettings::default());
    assert_eq!(std::fs::read_to_string(&salt_path).unwrap(), salt_text, "salt is created once");
    log.append(mail_event("carol@example.org")).unwrap();
    log.flush().unwrap();
    assert_eq!(email_token(&log, 2), first, "equal values still correlate across restarts");
    // Search by the raw value, as keyword or agent, finds both records.
    let q = |agent: Option<&str>, keyword: Option<&str>| {
        let q = audit::AuditQuery {
            agent: agent.map(str::to_string),
            keyword: keyword.map(str::to_string),
            ..Default::default()
        };
        log.search(&q).unwrap().items.iter().map(|r| r.seq).collect::<Vec<_>>()
    };
    assert_eq!(q(None, Some("carol@example.org")), [2, 1]);
    assert_eq!(q(Some("carol@example.org"), None), [2, 1]);
    assert_eq!(q(None, Some("dave@example.org")), Vec::<u64>::new());
    assert!(log.verify().ok);
}

#[test]
fn two_installs_hash_the_same_value_differently() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (la, lb) =
        (common::open(a.path(), &AuditSettings::default()), common::open(b.path(), &AuditSettings::default()));
    for l in [&la, &lb] {
        l.append(mail_event("erin@example.net")).unwrap();
        l.flush().unwrap();
    }
    assert_ne!(email_token(&la, 1), email_token(&lb, 1));
}

#[test]
fn records_masked_before_the_salt_existed_are_still_found() {
    let tmp = tempfile::tempdir().unwrap();
    let log = common::open(tmp.path(), &AuditSettings::default());
    // An older version wrote unsalted tokens; the writer leaves an existing token alone.
    let legacy = AuditEvent { reason: Some(mask_text("login by frank@example.com")), ..mail_event("system") };
    log.append(legacy).unwrap();
    log.append(mail_event("frank@example.com")).unwrap();
    log.flush().unwrap();
    assert!(log.get(1).unwrap().unwrap().reason.unwrap().contains(&token_for("email", "frank@example.com")));
    let page =
        log.search(&audit::AuditQuery { keyword: Some("frank@example.com".into()), ..Default::default() }).unwrap();
    assert_eq!(page.items.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 1]);
}

#[test]
fn salted_masking_keeps_the_short_form() {
    let salt = Salt::from_bytes(b"install-one");
    let out = mask_text_salted("mail grace@example.com or call +44 20 7946 0958", &salt);
    assert!(!out.contains("grace@example.com") && !out.contains("7946"), "{out}");
    let email = token_for_salted("email", "grace@example.com", &salt);
    assert!(out.contains(&email), "{out}");
    assert_eq!(email.len(), "[email:abcdef]".len());
    assert_ne!(email, token_for_salted("email", "grace@example.com", &Salt::from_bytes(b"install-two")));
    assert_eq!(mask_text("mail grace@example.com").replace(&token_for("email", "grace@example.com"), "X"), "mail X");
}

#[test]
fn find_secrets_masks_credentials_only_and_keeps_the_shape() {
    let gh = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    let mut v = json!({
        "content": [
            {"type": "text", "text": format!("{{\"GITHUB_TOKEN\":\"{gh}\",\"HOME\":\"/root\",\"MAIL\":\"a@example.com\"}}")},
            {"type": "text", "text": format!("key:\n{PEM}")},
            {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}
        ],
        "structuredContent": {"zeta": 1, "token": "abc123", "alpha": OPENAI, "count": 3},
        "isError": false
    });
    let before_keys: Vec<String> = v["structuredContent"].as_object().unwrap().keys().cloned().collect();
    let scan = find_secrets(&mut v, true, None);
    assert_eq!(scan.count, 4, "{v}");
    assert_eq!(scan.classes.iter().copied().collect::<Vec<_>>(), vec!["apikey", "private_key", "secret"]);
    let text = v.to_string();
    for secret in [gh, OPENAI, "abc123", "BEGIN PRIVATE KEY"] {
        assert!(!text.contains(secret), "{secret} left in {text}");
    }
    // Personal data, other values, key order and types are untouched.
    assert!(text.contains("a@example.com") && text.contains("/root") && text.contains("iVBORw0KGgo="));
    let after_keys: Vec<String> = v["structuredContent"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(before_keys, after_keys);
    assert_eq!(v["structuredContent"]["count"], 3);
    assert_eq!(v["structuredContent"]["alpha"], token_for("apikey", OPENAI));
    // A second pass finds nothing: tokens are not secrets.
    let again = find_secrets(&mut v, true, None);
    assert!(!again.found(), "{again:?} {v}");
    // Detection without replacing leaves the value as it was.
    let mut w = json!({"text": format!("Bearer {OPENAI_OLD}")});
    let scan = find_secrets(&mut w, false, None);
    assert!(scan.found() && w["text"].as_str().unwrap().contains(OPENAI_OLD));
}

/// The walk as it was written before it stopped copying every string and rebuilding every
/// object (session 11): each string through the text rules then the literals, each object
/// rebuilt key by key, values of secret-named keys replaced whole, keys sorted at the end.
mod reference {
    use super::*;
    use serde_json::Value;

    /// The secret names, compared whole after lower-casing and `-` -> `_`.
    pub const EXACT: &[&str] = &[
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "secret",
        "token",
        "api_key",
        "apikey",
        "authorization",
        "proxy_authorization",
        "auth",
        "cookie",
        "set_cookie",
        "x_api_key",
        "private_key",
        "credentials",
        "credential",
        "bearer",
        "otp",
        "pin",
        "cvv",
        "ssn",
    ];
    /// Suffixes that make any name a secret one.
    pub const SUFFIXES: &[&str] = &["_password", "_secret", "_token", "_api_key", "_apikey", "_private_key"];

    fn is_secret_key(key: &str) -> bool {
        let k = key.to_ascii_lowercase().replace('-', "_");
        EXACT.contains(&k.as_str()) || SUFFIXES.iter().any(|s| k.ends_with(s))
    }

    fn mask_str(s: &str, literals: &[&str], salt: &Salt) -> String {
        let mut out = mask_text_salted(s, salt);
        for lit in literals {
            if out.contains(lit) {
                out = out.replace(lit, &token_for_salted("masked", lit, salt));
            }
        }
        out
    }

    fn walk(v: &mut Value, literals: &[&str], salt: &Salt) {
        match v {
            Value::String(s) => *s = mask_str(s, literals, salt),
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, literals, salt)),
            Value::Object(m) => {
                let old = std::mem::take(m);
                for (k, mut val) in old {
                    if is_secret_key(&k) && !val.is_null() {
                        let text = match &val {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        val = Value::String(token_for_salted("secret", &text, salt));
                    } else {
                        walk(&mut val, literals, salt);
                    }
                    m.insert(mask_str(&k, literals, salt), val);
                }
            }
            _ => {}
        }
    }

    pub fn mask(v: &mut Value, extra: &[String], salt: &Salt) {
        let literals: Vec<&str> =
            extra.iter().filter(|e| !e.starts_with('$') && e.len() >= 3).map(String::as_str).collect();
        walk(v, &literals, salt);
        audit::mask::canonicalize(v);
    }
}

#[test]
fn the_copy_free_walk_masks_exactly_as_the_rebuilding_one_did() {
    use serde_json::{Map, Value};
    let salt = Salt::from_bytes(b"install-one");
    let keys = [
        "model",
        "Api-Key",
        "X-API-KEY",
        "user_password",
        "db-Password",
        "tokens",
        "token",
        "PIN",
        "pin_code",
        "pässword",
        "ünï-secret",
        "secret\u{e9}",
        "a@b.example",
        "jane.doe@example.com",
        "Authorization",
        "refresh_token",
        "id",
        "credential",
        "credentialsx",
        "-",
        "_token",
        "k",
        "",
    ];
    let strings = [
        "hello",
        "",
        OPENAI,
        ANTHROPIC,
        JWT,
        PEM,
        "call +1 (415) 555-2671 now",
        "card 4111 1111 1111 1111",
        "Bearer abcdef123456",
        "basic functionality",
        "password=hunter2",
        "mail jane.doe@example.com",
        "[apikey:1a2b3c]",
        "my literal-secret here",
        "ééé ünïcode",
        "4111111111111112",
        "token: abc",
    ];
    let extra = vec!["literal-secret".to_string(), "ab".to_string(), "hello".to_string()];
    // A small deterministic generator: the same values on every run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    fn gen(depth: u32, next: &mut dyn FnMut(usize) -> usize, keys: &[&str], strings: &[&str]) -> Value {
        match if depth == 0 { next(4) } else { next(7) } {
            0 => Value::String(strings[next(strings.len())].to_string()),
            1 => Value::from(next(1000) as u64),
            2 => Value::Null,
            3 => Value::Bool(next(2) == 1),
            4 | 5 => {
                let mut m = Map::new();
                for _ in 0..next(6) {
                    m.insert(keys[next(keys.len())].to_string(), gen(depth - 1, next, keys, strings));
                }
                Value::Object(m)
            }
            _ => Value::Array((0..next(4)).map(|_| gen(depth - 1, next, keys, strings)).collect()),
        }
    }
    let mut masked_keys = 0;
    for _ in 0..3_000 {
        let v = gen(4, &mut next, &keys, &strings);
        let (mut a, mut b) = (v.clone(), v.clone());
        audit::mask::mask_json_salted(&mut a, &extra, &salt);
        reference::mask(&mut b, &extra, &salt);
        assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap(), "input: {v}");
        masked_keys += masked_keys_in(&a);
    }
    assert!(masked_keys > 100, "keys were masked in the sample too ({masked_keys})");
}

/// Secret-named keys, one at a time, against the reference's names and suffixes: each name in
/// mixed case and with `-` for `_`, behind short and long prefixes (the walk matches the last
/// 19 bytes), with UTF-8 before it, and one byte longer or changed.
#[test]
fn secret_named_keys_are_the_references_at_any_length_and_case() {
    let salt = Salt::from_bytes(b"install-one");
    let others = ["model", "tool_calls", "finish_reason", "response_bytes"];
    let names = reference::EXACT.iter().chain(reference::SUFFIXES).chain(&others);
    let mut keys = Vec::new();
    for &n in names {
        let upper = n.to_ascii_uppercase();
        let dashed = n.replace('_', "-");
        let changed: String = n.chars().rev().collect();
        for k in [n.to_string(), upper, dashed.clone(), changed, format!("{n}x"), format!("x{n}")] {
            for prefix in ["", "my", "db_", "a_much_longer_service_name_", "ünïcödé-", "é"] {
                keys.push(format!("{prefix}{k}"));
            }
        }
        keys.push(format!("{}{}", "é".repeat(12), dashed.to_uppercase()));
    }
    let mut secret = 0;
    for k in &keys {
        let v = serde_json::json!({ k.as_str(): "v" });
        let (mut a, mut b) = (v.clone(), v.clone());
        audit::mask::mask_json_salted(&mut a, &[], &salt);
        reference::mask(&mut b, &[], &salt);
        assert_eq!(a, b, "key {k:?}");
        secret += usize::from(a != v);
    }
    assert!(secret > keys.len() / 5 && secret < keys.len() / 2, "{secret} of {} keys were secret", keys.len());
}

fn masked_keys_in(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => {
            m.iter().map(|(k, v)| usize::from(k.starts_with("[email:")) + masked_keys_in(v)).sum()
        }
        serde_json::Value::Array(a) => a.iter().map(masked_keys_in).sum(),
        _ => 0,
    }
}

/// The masking walk remembers, per thread, short strings the rules left alone (`mask::clean`):
/// a string seen again gets the same answer, secrets of any length are masked every time, and a
/// secret that differs from a remembered clean string by one byte is still masked.
#[test]
fn strings_seen_again_are_masked_exactly_as_the_first_time() {
    let email = "jane.doe@example.com";
    let jwt_short = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
    let mixed = [
        "upstream",
        "gpt-4o-mini",
        "No policy rule restricts this model call",
        email,
        "chat_completions",
        OPENAI,
        "call +1 (415) 555-2671",
        jwt_short,
        "4111 1111 1111 1111",
        "4111111111111112",
        "",
    ];
    let first: Vec<String> = mixed.iter().map(|s| mask_text(s)).collect();
    for round in 0..3 {
        for (s, want) in mixed.iter().zip(&first) {
            assert_eq!(&mask_text(s), want, "round {round}: {s}");
        }
    }
    assert!(!first[3].contains("jane.doe") && !first[5].contains(OPENAI) && !first[6].contains("555-2671"));
    assert!(!first[7].contains(jwt_short) && !first[8].contains("4111 1111"), "{first:?}");
    assert_eq!(first[0], "upstream");
    // A clean string remembered, then secrets of the same length that differ from it.
    let clean = "jane.doe@example";
    assert_eq!(mask_text(clean), clean);
    let twin = "jane@example.com";
    assert_eq!(clean.len(), twin.len());
    assert!(!mask_text(twin).contains("jane@example.com"), "{}", mask_text(twin));
    // The same answers on a thread that has seen none of them.
    let again = std::thread::spawn(move || mixed.iter().map(|s| mask_text(s)).collect::<Vec<_>>()).join().unwrap();
    assert_eq!(again, first);
}
