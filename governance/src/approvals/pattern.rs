//! What a grant pattern matches, written once in Rust with the same meaning as `grants.rego`
//! (a parity test runs both over random patterns and commands), and how broad it is.
//!
//! Matching (`grants.rego` `_grant_match` / `_ops_literal`):
//! - A pattern without `*`, `?`, `[` or `\` matches only the identical string (so a JSON
//!   argument pattern like `{"to":"a"}` is compared as text).
//! - Otherwise it is a glob as regorus' `glob.match(pattern, null, s)` reads it (globset,
//!   `/` not a separator, `\` escapes): `*` is any run of characters, `?` one character,
//!   `[...]` a class, `{a,b}` alternatives (write a literal brace as `\{` in a glob).
//! - Shell commands (exec grants, and the arguments of tools that carry a `command`) must also
//!   have exactly the shell operators the pattern writes literally, in the same order: a
//!   wildcard never covers `;`, `&`, `|`, `<`, `>`, `(`, `)`, `$`, a backtick, a new line (or
//!   its JSON escape). A pattern that puts an operator inside a class or alternation together
//!   with `[`/`{` is ambiguous and matches nothing.
//!
//! Invariant: [`literal`] of any string `s` is a pattern that matches `s` and nothing else a
//! shell would run differently; scopes derived from a held call always go through it.

use globset::GlobBuilder;

/// Characters that make a pattern a glob (an escape `\` included, so an escaped literal is read
/// by the glob matcher, not compared as text). `{` alone does not: JSON argument patterns
/// without wildcards stay plain text.
pub const GLOB_META: [char; 4] = ['*', '?', '[', '\\'];

/// Whether `p` is read as a glob (else it is compared as text).
pub fn is_glob(p: &str) -> bool {
    p.contains(GLOB_META)
}

/// `s` as a pattern that matches exactly `s`: every glob metacharacter escaped.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if matches!(c, '\\' | '*' | '?' | '[' | ']' | '{' | '}') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The inverse of [`literal`] for a pattern without unescaped metacharacters (for showing
/// an exact pattern as the text it matches); `None` when the pattern has wildcards.
pub fn unescape_exact(p: &str) -> Option<String> {
    if !is_glob(p) {
        return Some(p.to_string());
    }
    let mut out = String::with_capacity(p.len());
    let mut it = p.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => out.push(it.next()?),
            '*' | '?' | '[' | '{' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// A compiled pattern.
pub struct Matcher {
    text: String,
    glob: Option<globset::GlobMatcher>,
}

impl Matcher {
    /// Compile `p` the way regorus does (an invalid glob is an error naming why).
    pub fn new(p: &str) -> Result<Matcher, String> {
        if !is_glob(p) {
            return Ok(Matcher { text: p.to_string(), glob: None });
        }
        let g = GlobBuilder::new(&p.replace('/', "\0"))
            .literal_separator(true)
            .build()
            .map_err(|e| format!("'{p}' is not a valid glob: {}", e.kind()))?;
        Ok(Matcher { text: p.to_string(), glob: Some(g.compile_matcher()) })
    }

    /// Whether `s` matches (glob or text), shell operators not considered.
    pub fn is_match(&self, s: &str) -> bool {
        match &self.glob {
            None => self.text == s,
            Some(g) => g.is_match(s.replace('/', "\0")),
        }
    }
}

/// The shell operators in `s`, in order (the same tokens as `grants.rego` `_shell_ops`).
pub fn shell_ops(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' | b'$' | b'`' | b'\r' | b'\n' => {
                out.push(&s[i..i + 1]);
                i += 1;
            }
            b'\\' if matches!(b.get(i + 1), Some(b'n' | b'r' | b'u')) => {
                out.push(&s[i..i + 2]);
                i += 2;
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether an unescaped `[` or `{` occurs (one preceded by an even run of backslashes).
fn has_unescaped_open(p: &str) -> bool {
    let mut backslashes = 0usize;
    for c in p.chars() {
        match c {
            '\\' => backslashes += 1,
            '[' | '{' if backslashes.is_multiple_of(2) => return true,
            _ => backslashes = 0,
        }
    }
    false
}

/// A pattern whose operators could sit inside a class or alternation: refused at creation,
/// and matches nothing in `grants.rego`.
pub fn ambiguous_ops(p: &str) -> bool {
    !shell_ops(p).is_empty() && has_unescaped_open(p)
}

/// Whether a shell command `s` has exactly the operators pattern `p` writes.
pub fn ops_literal(p: &str, s: &str) -> bool {
    !ambiguous_ops(p) && shell_ops(p) == shell_ops(s)
}

/// What a grant is matched against, as `grants.rego` sees the call.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub kind: decision::CallKind,
    /// Command line, tool name or model name.
    pub text: &'a str,
    /// Exec: argv after the program (or the command line); tools: args as compact JSON.
    pub args: &'a str,
    /// A tool call whose `args.command` is a string (a shell command in a tool).
    pub carries_command: bool,
}

/// Whether a grant with `pattern` / `arg_pattern` matches `s` (agent, kind and expiry are
/// checked by the caller). Invalid globs match nothing here; `grants.rego` errors on them,
/// which is why they are refused at creation.
pub fn scope_matches(pattern: &str, arg_pattern: Option<&str>, s: &Subject<'_>) -> bool {
    let shell = s.kind == decision::CallKind::Exec;
    let m = |p: &str, text: &str| Matcher::new(p).is_ok_and(|m| m.is_match(text));
    if !m(pattern, s.text) || (shell && !ops_literal(pattern, s.text)) {
        return false;
    }
    match arg_pattern {
        None => true,
        Some(a) => m(a, s.args) && (!(shell || s.carries_command) || ops_literal(a, s.args)),
    }
}

/// One token of a pattern as far as breadth is concerned.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok {
    Lit(char),
    Wild,
}

fn tokens(p: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut it = p.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => out.push(Tok::Lit(it.next().unwrap_or('\\'))),
            '*' | '?' | '[' | '{' => out.push(Tok::Wild),
            c => out.push(Tok::Lit(c)),
        }
    }
    out
}

/// Programs that run whatever their arguments name (a wildcard after them covers any
/// program): privilege and process wrappers, shells, interpreters, `find`/`xargs`.
const WRAPPERS: [&str; 48] = [
    "sudo",
    "doas",
    "su",
    "pkexec",
    "runuser",
    "env",
    "nohup",
    "nice",
    "ionice",
    "timeout",
    "time",
    "stdbuf",
    "setsid",
    "chroot",
    "unshare",
    "nsenter",
    "xargs",
    "parallel",
    "watch",
    "exec",
    "eval",
    "command",
    "builtin",
    "busybox",
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "fish",
    "csh",
    "tcsh",
    "python",
    "perl",
    "ruby",
    "node",
    "deno",
    "bun",
    "php",
    "lua",
    "awk",
    "gawk",
    "osascript",
    "ssh",
    "script",
    "find",
    "npx",
    "uvx",
];

fn is_wrapper(word: &str) -> bool {
    let base = word.rsplit('/').next().unwrap_or(word);
    // python3, python3.12, perl5...: the version does not change what it runs.
    let base = base.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    WRAPPERS.contains(&base)
}

fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else { return false };
    let mut cs = name.chars();
    cs.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Why a pattern is as broad as it is; drives breadth and the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// No wildcard: the one string.
    Exact,
    /// Wildcards, with the head (model / tool name prefix, or the program) written out.
    Pattern,
    /// The pattern starts with a wildcard: it can match anything of its kind.
    Unanchored,
    /// Exec: a wildcard before or in the program name, so any program can run.
    AnyProgram,
    /// Exec: the program is a wrapper that runs whatever follows.
    Wrapper(String),
    /// Exec: wildcards in a command that writes shell operators (a compound command).
    Compound,
}

/// How far `p` reaches for a call kind (see [`Reach`]).
pub fn reach(kind: decision::CallKind, p: &str) -> Reach {
    if !is_glob(p) {
        return Reach::Exact;
    }
    let toks = tokens(p);
    if !toks.contains(&Tok::Wild) {
        return Reach::Exact;
    }
    if toks.first() == Some(&Tok::Wild) {
        return Reach::Unanchored;
    }
    if kind != decision::CallKind::Exec {
        return Reach::Pattern;
    }
    // The words up to and including the program must be literal, and the program must end
    // at a literal space: `*` covers spaces, so a wildcard anywhere before could stand for
    // another program (`A=* make` matches `A=x rm -rf / make`).
    let mut word = String::new();
    for t in toks.iter().skip_while(|t| matches!(t, Tok::Lit(' ' | '\t'))) {
        match t {
            Tok::Wild => return Reach::AnyProgram,
            Tok::Lit(' ' | '\t') if word.is_empty() => {}
            Tok::Lit(' ' | '\t') => {
                if is_assignment(&word) {
                    word.clear();
                    continue;
                }
                if is_wrapper(&word) {
                    return Reach::Wrapper(word);
                }
                if !shell_ops(p).is_empty() {
                    return Reach::Compound;
                }
                return Reach::Pattern;
            }
            Tok::Lit(c) => word.push(*c),
        }
    }
    Reach::AnyProgram
}

#[cfg(test)]
mod tests {
    use super::*;
    use decision::CallKind::{Exec, ModelCall, ToolCall};

    fn exec<'a>(cmd: &'a str) -> Subject<'a> {
        Subject { kind: Exec, text: cmd, args: cmd, carries_command: false }
    }

    #[test]
    fn the_reported_widening_is_closed() {
        let held = "sudo systemctl status nginx*";
        let p = literal(held);
        assert_eq!(p, "sudo systemctl status nginx\\*");
        assert!(scope_matches(&p, None, &exec(held)));
        assert!(!scope_matches(&p, None, &exec("sudo systemctl status nginx; rm -rf / --no-preserve-root")));
        assert!(!scope_matches(&p, None, &exec("sudo systemctl status nginx-x")));
        // Even the glob a human might write cannot span an operator.
        for cmd in ["sudo systemctl status nginx; rm -rf /", "sudo systemctl status nginx && id", "git log $(id)"] {
            assert!(!scope_matches("sudo systemctl status nginx*", None, &exec(cmd)), "{cmd}");
            assert!(!scope_matches("git *", None, &exec(cmd)), "{cmd}");
        }
        assert!(scope_matches("git *", None, &exec("git log --oneline -n 3")));
        // Operators written out are allowed where written, and nowhere else.
        assert!(scope_matches("cd build && make *", None, &exec("cd build && make all")));
        assert!(!scope_matches("cd build && make *", None, &exec("cd build && make all; id")));
    }

    #[test]
    fn breadth_by_meaning() {
        for p in ["*", "?*", "**", "[!x]*", "*rm*", "{a,b}*", "?"] {
            assert_eq!(reach(Exec, p), Reach::Unanchored, "{p}");
            assert_eq!(reach(ModelCall, p), Reach::Unanchored, "{p}");
            assert_eq!(reach(ToolCall, p), Reach::Unanchored, "{p}");
        }
        assert_eq!(reach(Exec, "git status"), Reach::Exact);
        assert_eq!(reach(Exec, &literal("ls [abc] *.rs")), Reach::Exact);
        assert_eq!(reach(Exec, "git *"), Reach::Pattern);
        assert_eq!(reach(Exec, "FOO=1 make *"), Reach::Pattern);
        assert_eq!(reach(Exec, "git*"), Reach::AnyProgram);
        assert_eq!(reach(Exec, "A=* make"), Reach::AnyProgram);
        assert_eq!(reach(Exec, "sudo systemctl status nginx*"), Reach::Wrapper("sudo".into()));
        assert_eq!(reach(Exec, "/usr/bin/python3.12 *"), Reach::Wrapper("/usr/bin/python3.12".into()));
        assert_eq!(reach(Exec, "cd build && make *"), Reach::Compound);
        assert_eq!(reach(ModelCall, "gpt-4o*"), Reach::Pattern);
    }

    #[test]
    fn ops_and_escapes() {
        assert_eq!(
            shell_ops("a; b && c | d > e $(f) `g`\nh"),
            vec![";", "&", "&", "|", ">", "$", "(", ")", "`", "`", "\n"]
        );
        assert_eq!(shell_ops(r#"{"command":"ls\nrm"}"#), vec!["\\n"]);
        assert!(ambiguous_ops("ls [;]*"));
        assert!(!ambiguous_ops(&literal("test [ -f x ] && echo y")));
        assert_eq!(unescape_exact(&literal("a*b[c]\\d")).as_deref(), Some("a*b[c]\\d"));
        assert!(Matcher::new("a[").is_err());
    }
}
