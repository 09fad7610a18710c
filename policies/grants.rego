# Standing grants ("allow always" answers). A grant matches when it is for this agent and call
# kind, its `pattern` (exact or glob) matches the command / tool name / model name, its
# optional `arg_pattern` matches the arguments, and it has not expired at `input.now`.
# A matching grant turns a hold into an allow; it never overrides a deny.
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

grant_args := json.marshal(object.get(input.tool, "args", null)) if input.kind in {"tool_call", "plugin"}

grant_args := "" if input.kind == "model_call"

matching_grants contains g.id if {
	some g in input.grants
	g.agent == input.agent
	g.kind == input.kind
	glob_or_exact(g.pattern, grant_subject)
	_grant_args_match(g)
	_grant_live(g)
}

_grant_args_match(g) if object.get(g, "arg_pattern", null) == null

_grant_args_match(g) if {
	is_string(g.arg_pattern)
	glob_or_exact(g.arg_pattern, grant_args)
}

_grant_live(g) if object.get(g, "expires_at", null) == null

_grant_live(g) if {
	is_string(g.expires_at)
	time.parse_rfc3339_ns(g.expires_at) > time.parse_rfc3339_ns(input.now)
}
