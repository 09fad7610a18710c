//! Plugin facts: what an OpenClaw tool call touches, derived once in Rust from the tool name,
//! its arguments and the agent's workspace, and handed to the policy as fields of
//! `input.plugin` (docs/policy-input.md): the tool's family, the files it writes or reads
//! (resolved as OpenClaw resolves them, `..` folded, so `/ws/../etc/x` is `/etc/x`), the
//! recipients of a message, the hosts a browser or fetch goes to, and `grant_args`, the text
//! an "allow always" grant matches (the recipients of a message, not its wording).
//!
//! Invariant: derived here, never taken from the caller ([`attach_to_json`] overwrites what
//! an input supplies), and the plugin gate uses the same [`facts`] for its metrics and for
//! the grant an approval suggests, so a grant made from an approval matches the next call.

use decision::{mcp_parts, ToolFamily};
use serde_json::Value;

/// The facts of one tool call (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFacts {
    pub family: ToolFamily,
    /// Files the call writes (file_write) or reads (file_read): absolute and folded, `~/...`
    /// for home paths, or relative as written when the workspace is unknown.
    pub paths: Vec<String>,
    /// Message recipients (`target`, `targets`, `to`, `channelId`), as written.
    pub recipients: Vec<String>,
    /// Lower-cased hosts of the URLs a browser or web call names; `<scheme>:` for URLs that
    /// are not http(s) (`file:`, `data:`, `javascript:`).
    pub hosts: Vec<String>,
    /// What an "allow always" grant of this call matches (`grants.rego`), when the family has
    /// a narrower subject than the whole arguments: the command, the paths, the recipients,
    /// the hosts, the spawned agent. `None`: the arguments as compact JSON with sorted keys.
    pub grant_args: Option<String>,
}

/// Keys whose string values name a file, for file tools.
const PATH_KEYS: [&str; 3] = ["path", "file_path", "filePath"];

/// Keys whose string values are URLs, for browser and web tools (at any depth up to 4).
const URL_KEYS: [&str; 5] = ["url", "targetUrl", "href", "uri", "urls"];

/// `apply_patch` envelope lines that name a file.
const PATCH_MARKERS: [&str; 4] = ["*** Add File: ", "*** Delete File: ", "*** Update File: ", "*** Move to: "];

/// The facts of calling OpenClaw tool `tool_name` with `args` in `workspace`;
/// `derived_paths` are OpenClaw's own (absolute) target paths, added to the paths.
pub fn facts(tool_name: &str, args: &Value, workspace: Option<&str>, derived_paths: &[String]) -> PluginFacts {
    let family = ToolFamily::of(tool_name);
    let workspace = workspace.filter(|w| !w.is_empty());
    let (mut paths, mut recipients, mut hosts) = (Vec::new(), Vec::new(), Vec::new());
    match family {
        ToolFamily::FileWrite | ToolFamily::FileRead => {
            for k in PATH_KEYS {
                if let Some(p) = args.get(k).and_then(Value::as_str) {
                    push_unique(&mut paths, resolve(p, workspace));
                }
            }
            if let Some(patch) = args.get("input").and_then(Value::as_str) {
                for line in patch.lines() {
                    if let Some(p) = PATCH_MARKERS.iter().find_map(|m| line.strip_prefix(m)) {
                        push_unique(&mut paths, resolve(p.trim(), workspace));
                    }
                }
            }
            for p in derived_paths {
                push_unique(&mut paths, resolve(p, workspace));
            }
            paths.retain(|p| !p.is_empty());
        }
        ToolFamily::Message => {
            for k in ["target", "targets", "to", "channelId"] {
                match args.get(k) {
                    Some(Value::String(s)) => push_unique(&mut recipients, s.trim().to_string()),
                    Some(Value::Array(items)) => {
                        for s in items.iter().filter_map(Value::as_str) {
                            push_unique(&mut recipients, s.trim().to_string());
                        }
                    }
                    _ => {}
                }
            }
            recipients.retain(|r| !r.is_empty());
        }
        ToolFamily::Browser | ToolFamily::Web => collect_hosts(args, 0, &mut hosts),
        _ => {}
    }
    let joined = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        (!v.is_empty()).then(|| v.join(" "))
    };
    let grant_args = match family {
        ToolFamily::Exec => args.get("command").and_then(Value::as_str).map(str::to_string),
        ToolFamily::FileWrite | ToolFamily::FileRead => joined(&paths),
        ToolFamily::Message => joined(&recipients),
        ToolFamily::Browser | ToolFamily::Web => joined(&hosts),
        ToolFamily::Spawn => Some(args.get("agentId").and_then(Value::as_str).unwrap_or("default").to_string()),
        ToolFamily::Mcp | ToolFamily::ToolSearch | ToolFamily::Other => None,
    };
    PluginFacts { family, paths, recipients, hosts, grant_args }
}

/// `(server, tool)` of an MCP tool name, re-exported for callers of this module.
pub fn mcp_tool(name: &str) -> Option<(&str, &str)> {
    mcp_parts(name)
}

fn push_unique(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) {
        v.push(s);
    }
}

/// A file path as OpenClaw resolves it (`resolveToCwd`): one leading `@` dropped (a second
/// one is a literal name), `file://` URLs taken as their path, `~` kept (the gateway's home is
/// not known here), relative paths joined to the workspace; then `.` and `..` folded.
pub fn resolve(p: &str, workspace: Option<&str>) -> String {
    let p = p.strip_prefix('@').unwrap_or(p);
    let owned;
    let p = if p.starts_with('@') {
        owned = format!("./{p}");
        owned.as_str()
    } else {
        p
    };
    let p = match p.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("file://") => &p[7..],
        _ => p,
    };
    if p == "~" || p.starts_with("~/") {
        return format!("~{}", fold(&p[1..]));
    }
    if p.starts_with('/') {
        return fold(p);
    }
    match workspace {
        Some(ws) if ws.starts_with('/') => fold(&format!("{ws}/{p}")),
        Some(ws) if ws == "~" || ws.starts_with("~/") => format!("~{}", fold(&format!("{}/{p}", &ws[1..]))),
        _ => p.to_string(),
    }
}

/// `/`-rooted path with empty and `.` segments dropped and `..` folded (never above `/`).
fn fold(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

fn collect_hosts(v: &Value, depth: usize, out: &mut Vec<String>) {
    if depth > 4 {
        return;
    }
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if URL_KEYS.contains(&k.as_str()) {
                    match x {
                        Value::String(s) => push_unique(out, host_of(s)),
                        Value::Array(items) => {
                            for s in items.iter().filter_map(Value::as_str) {
                                push_unique(out, host_of(s));
                            }
                        }
                        _ => collect_hosts(x, depth + 1, out),
                    }
                } else if x.is_object() || x.is_array() {
                    collect_hosts(x, depth + 1, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| collect_hosts(x, depth + 1, out)),
        _ => {}
    }
    out.retain(|h| !h.is_empty());
}

/// The host of a URL, lower-cased, without user info, port or trailing dot; `<scheme>:` when
/// the scheme is not http(s); the part before the first `/` when there is no scheme.
pub fn host_of(url: &str) -> String {
    let url = url.trim();
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) => {
            let scheme = scheme.to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return format!("{scheme}:");
            }
            rest
        }
        _ => match url.split_once(':') {
            // `data:...`, `javascript:...`, `mailto:...` (no `//`), but not `host:port/x`.
            Some((scheme, after))
                if !scheme.is_empty()
                    && scheme.chars().all(|c| c.is_ascii_alphabetic())
                    && !after.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                return format!("{}:", scheme.to_ascii_lowercase());
            }
            _ => url,
        },
    };
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or(host_port)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_paths_resolve_like_openclaw() {
        let ws = Some("/home/u/.openclaw/workspace");
        assert_eq!(resolve("notes.md", ws), "/home/u/.openclaw/workspace/notes.md");
        assert_eq!(resolve("./a/../b.md", ws), "/home/u/.openclaw/workspace/b.md");
        assert_eq!(resolve("../../.ssh/authorized_keys", ws), "/home/u/.ssh/authorized_keys");
        assert_eq!(resolve("/ws/../etc//passwd", ws), "/etc/passwd");
        assert_eq!(resolve("/../../x", ws), "/x");
        assert_eq!(resolve("~/.ssh/id_rsa", ws), "~/.ssh/id_rsa");
        assert_eq!(resolve("~", ws), "~/");
        assert_eq!(resolve("@notes.md", ws), "/home/u/.openclaw/workspace/notes.md");
        assert_eq!(resolve("@@x", ws), "/home/u/.openclaw/workspace/@x");
        assert_eq!(resolve("FILE:///etc/hosts", ws), "/etc/hosts");
        assert_eq!(resolve("rel.txt", None), "rel.txt");
        assert_eq!(resolve("a/b", Some("~/w")), "~/w/a/b");
    }

    #[test]
    fn facts_per_family() {
        let ws = Some("/w");
        let f = facts("write", &json!({"path": "out/../x.txt", "content": "hi"}), ws, &[]);
        assert_eq!(
            (f.family, f.paths.clone(), f.grant_args.as_deref()),
            (ToolFamily::FileWrite, vec!["/w/x.txt".to_string()], Some("/w/x.txt"))
        );
        let patch = "*** Begin Patch\n*** Add File: new.txt\n+x\n*** Update File: /etc/hosts\n*** Move to: ../moved\n@@\n-a\n+b\n*** Delete File: gone.md\n*** End Patch";
        let f = facts("apply_patch", &json!({"input": patch}), ws, &["/w/new.txt".into(), "/srv/y".into()]);
        assert_eq!(f.paths, ["/w/new.txt", "/etc/hosts", "/moved", "/w/gone.md", "/srv/y"]);
        assert_eq!(f.grant_args.as_deref(), Some("/etc/hosts /moved /srv/y /w/gone.md /w/new.txt"));
        let f = facts(
            "message",
            &json!({"action": "send", "target": " +15550100 ", "targets": ["@team", "+15550100"], "message": "hi"}),
            ws,
            &[],
        );
        assert_eq!(f.recipients, ["+15550100", "@team"]);
        assert_eq!(f.grant_args.as_deref(), Some("+15550100 @team"));
        let f = facts("message", &json!({"action": "read"}), ws, &[]);
        assert!(f.recipients.is_empty() && f.grant_args.is_none());
        let f = facts(
            "browser",
            &json!({"action": "open", "targetUrl": "https://User@Docs.Example.com.:8443/a?b#c", "request": {"urls": ["file:///etc/passwd"]}}),
            ws,
            &[],
        );
        assert_eq!(f.hosts, ["docs.example.com", "file:"]);
        let f = facts("web_fetch", &json!({"url": "http://[::1]:8080/x"}), ws, &[]);
        assert_eq!(f.hosts, ["[::1]"]);
        let f = facts("exec", &json!({"command": "ls -la"}), ws, &[]);
        assert_eq!((f.family, f.grant_args.as_deref()), (ToolFamily::Exec, Some("ls -la")));
        assert_eq!(
            facts("sessions_spawn", &json!({"task": "x", "agentId": "ops"}), ws, &[]).grant_args.as_deref(),
            Some("ops")
        );
        let f = facts("mail__send_email", &json!({"to": "a@b.c"}), ws, &[]);
        assert_eq!((f.family, f.grant_args), (ToolFamily::Mcp, None));
        assert!(f.recipients.is_empty(), "MCP tools are matched by the tool rules, not the message family");
    }

    #[test]
    fn hosts_of_odd_urls() {
        for (url, host) in [
            ("https://example.com", "example.com"),
            ("example.com/path", "example.com"),
            ("localhost:3000/x", "localhost"),
            ("javascript:alert(1)", "javascript:"),
            ("data:text/html,x", "data:"),
            ("HTTPS://A.B/", "a.b"),
            ("https://evil.com\\@good.com/", "evil.com"),
            ("https://good.com@evil.com/", "evil.com"),
            ("", ""),
        ] {
            assert_eq!(host_of(url), host, "{url}");
        }
    }
}
