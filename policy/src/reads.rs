//! Which optional, costly parts of the input a bundle can read, decided once per revision from
//! its Rego text, so a call path builds them only for a bundle that may look at them.
//!
//! Today one part: `input.mcp.calls`, the MCP session's last 100 calls (an array of objects:
//! hundreds of allocations per tool call to build and convert). The check is conservative: a
//! bundle reads it when the word `calls` appears anywhere in its code or its strings (comments
//! excluded: `input.mcp["calls"]`, `object.get(m, "calls", [])` count), or when `input` is used other than as `input.<field>` (bare `input`,
//! `input[...]`, `walk(input, ...)`), where any part may be reached without naming it.
//! A wrong "no" would hide real input from a rule, so every doubt answers "yes" (a key built
//! at run time from pieces, `concat("", ["cal", "ls"])`, is the one way around it; the docs say so).

use crate::bundle::BundleFile;

/// What one revision may read.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reads {
    pub mcp_calls: bool,
}

impl Reads {
    pub fn of(files: &[BundleFile]) -> Reads {
        let code: Vec<String> =
            files.iter().filter(|f| f.is_rego() && !f.is_test()).map(|f| code_only(&f.contents)).collect();
        Reads { mcp_calls: code.iter().any(|c| has_word(c, "calls") || whole_input(c)) }
    }
}

/// The text without comments (`#` to the end of the line, outside strings).
fn code_only(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' | '`' => {
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' && c == '"' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c || (d == '\n' && c == '"') {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Byte offsets just past each whole-word occurrence of `word`.
fn word_ends<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(word).filter_map(move |(i, _)| {
        let before = code[..i].chars().next_back().is_some_and(is_ident);
        let end = i + word.len();
        let after = code[end..].chars().next().is_some_and(is_ident);
        (!before && !after).then_some(end)
    })
}

fn has_word(code: &str, word: &str) -> bool {
    word_ends(code, word).next().is_some()
}

/// `input` used other than as `input.<field>`.
fn whole_input(code: &str) -> bool {
    word_ends(code, "input").any(|end| {
        let rest = code[end..].trim_start_matches([' ', '\t']);
        !(rest.starts_with('.') && rest[1..].chars().next().is_some_and(is_ident))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(src: &str) -> bool {
        Reads::of(&[BundleFile { path: "p.rego".into(), contents: src.into() }]).mcp_calls
    }

    #[test]
    fn only_code_that_may_reach_the_calls_reads_them() {
        assert!(!reads("package clawbutler\n# the session's calls\nx if input.mcp.secret_seen\n"));
        assert!(!reads("package clawbutler\nmsg := \"# not a comment\" # calls\nz if input.tool.name == \"a\"\n"));
        assert!(reads("package clawbutler\nn := count(input.mcp.calls)\n"));
        assert!(reads("package clawbutler\nn := count(input.mcp[\"calls\"])\n"));
        assert!(reads("package clawbutler\nn := count(object.get(input.mcp, `calls`, []))\n"));
        assert!(reads("package clawbutler\nm := input.mcp\nn := count(m.calls)\n"));
        assert!(reads("package clawbutler\nall := input\n"));
        assert!(reads("package clawbutler\nm := input[\"mcp\"]\n"));
        assert!(reads("package clawbutler\nx if { walk(input, [p, v]) }\n"));
        assert!(!reads("package clawbutler\nmy_calls_total := 1\nuser_input := 2\n"));
    }

    #[test]
    fn test_files_do_not_count_and_the_shipped_bundle_does_not_read_the_calls() {
        let t = BundleFile { path: "p_test.rego".into(), contents: "x := input.mcp.calls".into() };
        assert!(!Reads::of(&[t]).mcp_calls);
        let shipped = crate::bundle::read_files(&crate::BundleSource::Embedded).unwrap();
        assert!(!Reads::of(&shipped).mcp_calls);
    }
}
