# Standing grants ("allow always" answers). A grant matches when it is for this agent and call
# kind, its `pattern` matches the command / tool name / model name, its optional `arg_pattern`
# matches the arguments, and it has not expired at `input.now`.
# A matching grant turns a hold into an allow; it never overrides a deny.
#
# MCP tool calls (kind tool_call with a `tool.server`) also match the qualified name
# `<server>/<tool>`, so a grant can cover one server's tool (`github/create_issue`) or all of
# a server's tools (`github/*`); a bare tool name still covers that tool on every server.
#
# Matching (the same in Rust: governance/src/approvals/pattern.rs, checked by a parity test):
# - a pattern without `*`, `?`, `[` or `\` is compared as text; otherwise it is a glob
#   (`glob.match` with no delimiters; `\` escapes, so a scope derived from a held command
#   escapes its metacharacters and matches exactly that command);
# - shell commands (exec, and tools that carry `args.command`) must have exactly the shell
#   operators the pattern writes, in the same order: a wildcard never covers `;`, `&`, `|`,
#   `<`, `>`, `(`, `)`, `$`, a backtick or a new line, so `git *` never allows
#   `git log; rm -rf /`. Operators inside `[...]`/`{...}` make a pattern ambiguous: it matches
#   nothing.
package clawbutler

grant_subject := command if input.kind == "exec"

grant_subject := input.tool.name if input.kind in {"tool_call", "plugin"}

grant_subject := input.model.name if input.kind == "model_call"

# Exec arguments: argv without the program when argv is given, else the whole command line.
# Tool arguments: the args object as compact JSON with sorted keys.
grant_args := concat(" ", array.slice(input.exec.argv, 1, count(input.exec.argv))) if {
	input.kind == "exec"
	count(object.get(input.exec, "argv", [])) > 0
}

grant_args := command if {
	input.kind == "exec"
	count(object.get(input.exec, "argv", [])) == 0
}

# Plugin-gate calls: what the engine says the call touches (`input.plugin.grant_args`: the
# command, the paths, the recipients, the hosts, the spawned agent), so "allow always" for a
# message covers its recipients, not its wording; the args as JSON when there is none.
grant_args := input.plugin.grant_args if {
	input.kind == "plugin"
	is_string(input.plugin.grant_args)
} else := json.marshal(object.get(input.tool, "args", null)) if input.kind in {"tool_call", "plugin"}

grant_args := "" if input.kind == "model_call"

matching_grants contains g.id if {
	some g in input.grants
	g.agent == input.agent
	g.kind == input.kind
	_grant_subject_match(g.pattern)
	_grant_pattern_ops_ok(g)
	_grant_args_match(g)
	_grant_live(g)
}

_grant_subject_match(p) if _grant_match(p, grant_subject)

_grant_subject_match(p) if {
	input.kind == "tool_call"
	is_string(input.tool.server)
	_grant_match(p, concat("/", [input.tool.server, input.tool.name]))
}

_grant_args_match(g) if object.get(g, "arg_pattern", null) == null

_grant_args_match(g) if {
	is_string(g.arg_pattern)
	_grant_match(g.arg_pattern, grant_args)
	_grant_args_ops_ok(g)
}

# A plugin-gate grant made from an approval holds the arguments as the inbox showed them,
# masked (phone numbers, e-mail addresses, secrets: `[phone:1a2b3c]`, keyed by the sidecar's
# salt); the gate supplies the call's arguments masked the same way.
_grant_args_match(g) if {
	input.kind == "plugin"
	is_string(g.arg_pattern)
	is_string(input.plugin.grant_args_masked)
	_grant_match(g.arg_pattern, input.plugin.grant_args_masked)
	_grant_args_ops_ok(g)
}

# Text or glob (see the header).
_grant_match(p, s) if {
	is_string(p)
	not regex.match(`[*?\[\\]`, p)
	p == s
}

_grant_match(p, s) if {
	is_string(p)
	is_string(s)
	regex.match(`[*?\[\\]`, p)
	glob.match(p, null, s)
}

# The shell operators of a text, in order (a JSON-escaped new line counts: tool arguments are
# matched as JSON text).
_shell_ops(s) := regex.find_n("[;&|<>()$`\r\n]|\\\\[nru]", s, -1)

# Operators inside a class or alternation could stand for other characters: never matches.
_ambiguous_ops(p) if {
	count(_shell_ops(p)) > 0
	regex.match(`(^|[^\\])(\\\\)*[\[{]`, p)
}

_ops_literal(p, s) if {
	not _ambiguous_ops(p)
	_shell_ops(p) == _shell_ops(s)
}

_grant_pattern_ops_ok(g) if g.kind != "exec"

_grant_pattern_ops_ok(g) if {
	g.kind == "exec"
	_ops_literal(g.pattern, grant_subject)
}

_tool_carries_command if is_string(input.tool.args.command)

_grant_args_ops_ok(g) if g.kind == "model_call"

_grant_args_ops_ok(g) if {
	g.kind in {"tool_call", "plugin"}
	not _tool_carries_command
}

_grant_args_ops_ok(g) if {
	g.kind in {"tool_call", "plugin"}
	_tool_carries_command
	_ops_literal(g.arg_pattern, grant_args)
}

_grant_args_ops_ok(g) if {
	g.kind == "exec"
	_ops_literal(g.arg_pattern, grant_args)
}

_grant_live(g) if object.get(g, "expires_at", null) == null

_grant_live(g) if {
	is_string(g.expires_at)
	time.parse_rfc3339_ns(g.expires_at) > time.parse_rfc3339_ns(input.now)
}
