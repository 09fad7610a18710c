# The one entry point: data.clawbutler.decision.
#
# Rules never write `decision` themselves. They add findings
#   {"rule": "...", "reason": "...", "risk": "low|medium|high|critical", "mask": [...]?}
# to one family of sets: `model_denies` (model calls), `call_denies` (every kind),
# `exec_holds` and `secret_holds` (exec and tool kinds), `tool_holds` (tool kinds). Only the
# families that apply to the call's kind are evaluated (that keeps a model call's decision
# cheap); `deny_findings` and `hold_findings` gather them, and the rules below compose:
#   deny beats hold beats allow; among several findings of one action the highest risk wins,
#   then the rule name (so the winner is deterministic); a live grant for this call turns a
#   hold (never a deny) into an allow. An input kind this bundle does not know leaves
#   `decision` undefined, which the engine turns into a deny (fail closed).
#
# Cost note: `else` chains stop at the first branch that holds. The usual answer (an allowed
# model call or command) comes first, as a literal, after the same emptiness checks of
# `deny_findings` and `hold_findings` the general chain (`_decide`) makes; everything else
# pays one more rule call. Every branch tried resets all of the rule's registers, so
# `decision` stays small, and the wide branches of `hold_findings` live in `_hold_rest`.
# (`x != set()` is a plain comparison; `count(x) > 0` would be a builtin call, several times
# dearer.)
package clawbutler

deny_findings := call_denies if {
	input.kind in {"exec", "tool_call", "plugin"}
} else := model_denies | call_denies if {
	input.kind == "model_call"
}

# The first branch is the fast path for the usual command, on the engine-derived features:
# when it holds, no rule of `exec_holds` or `secret_holds` (exec.rego, secrets.rego) can add a
# finding, so they are skipped (about a dozen rule evaluations). It is a sufficient condition
# only: when it fails, every rule runs. Why each test suffices: no trigger word means
# `_families` is empty (no writing program either); no hit means no marker (`_has_markers`
# fails, so `_word_holds` is never looked at) and no credential hint (`_maybe_secret` fails);
# `written_paths` is then only the redirect targets, and relative ones are never held; no
# configured high-risk commands (read directly: absent means none); a `cwd` under the
# workspace (`cwd_in_workspace`: the first branch of `under_workspace`). It is written out
# here rather than as a rule of its own: a rule call costs more than all of its tests.
# Tested by the engine's VM-vs-interpreter test: the interpreter, without features, never
# takes this path, and both must decide alike.
hold_findings := set() if {
	input.kind == "exec"
	f := input.exec.features
	f.triggers == {}
	f.hits == {}
	every p in f.redirects {
		not _absolute(p)
	}
	not data.clawbutler.config.high_risk_commands != []
	f.cwd_in_workspace
} else := set() if {
	input.kind == "model_call"
} else := _tool_call_holds if {
	# Tool calls without a `command` argument (most MCP calls): no command rule can hold
	# (`exec_holds` reads the command's words, paths, redirects, or the `cwd` / `workdir` of
	# other kinds), so only the credential and tool rules run (`_tool_call_holds`).
	input.kind == "tool_call"
	not is_string(input.tool.args.command)
} else := _hold_rest

# The rest of `hold_findings`'s chain, in a rule of its own: a rule's register window holds the
# temporaries of all of its branches, and every branch tried resets the whole window. With
# these five branches (the widest of the chain) in the same rule, every call paid for resetting
# their registers once or twice: moved here, the usual model call and tool call, which stop in
# the branches above, decide with 3-4 % fewer instructions and the usual command with 1.4 %
# fewer, and the calls that come here pay one rule call and still gain (docs/performance.md,
# session 17).
_hold_rest := set() if {
	# The second fast path: the only trigger words are writing programs without a rule of their
	# own (cp, mv, mkdir, ...: the only family is "write"), and every path the command names is
	# inside the agent's workspace (`paths_in_workspace`: the first branch of `under_workspace`
	# for each), so `written_paths` holds nothing outside it; the other tests are the first
	# branch's.
	input.kind == "exec"
	f := input.exec.features
	f.hits == {}
	f.triggers.write
	count(f.triggers) == 1
	every p in f.redirects {
		not _absolute(p)
	}
	not data.clawbutler.config.high_risk_commands != []
	f.cwd_in_workspace
	f.paths_in_workspace
} else := exec_holds | secret_holds if {
	input.kind == "exec"
} else := set() if {
	# Plugin-gate calls another gate decides (plugin.rego).
	input.kind == "plugin"
	plugin_passthrough
} else := secret_holds | tool_holds if {
	# Plugin-gate calls with neither a `command` nor a `workdir` argument (read, write, message,
	# web, ...): no command rule can hold (the plugin's exec rule reads `workdir`, the others
	# the command).
	input.kind == "plugin"
	not is_string(input.tool.args.command)
	not is_string(input.tool.args.workdir)
} else := (exec_holds | secret_holds) | tool_holds if {
	input.kind in {"tool_call", "plugin"}
}

# With no path-like argument either (the engine's `arg_features`), no credential rule can hold:
# `secret_holds` reads the command's words and the path-like arguments.
_tool_call_holds := tool_holds if {
	input.tool.arg_features.paths == set()
} else := secret_holds | tool_holds

# deny_findings and hold_findings are undefined for an unknown kind, and so is _default_allow,
# so no branch holds and `decision` stays undefined. The four literals equal what `_decide`
# answers for the same calls (the allow.* rows of `_default_allow`; tests check both ways).
decision := {
	"action": "allow", "rule": "allow.exec", "reason": "No policy rule restricts this command",
	"risk": "medium", "obligations": {"mask": []},
} if {
	input.kind == "exec"
	deny_findings == set()
	hold_findings == set()
} else := {
	"action": "allow", "rule": "allow.model_call", "reason": "No policy rule restricts this model call",
	"risk": "low", "obligations": {"mask": []},
} if {
	input.kind == "model_call"
	deny_findings == set()
	hold_findings == set()
	input.model.endpoint != "models"
} else := {
	"action": "allow", "rule": "allow.tool_call", "reason": "No policy rule restricts this tool call",
	"risk": "low", "obligations": {"mask": [], "result_secrets": data.clawbutler.config.tool_result_secrets},
} if {
	# The usual MCP tool call, as `_decide` would answer it (`_default_allow`'s last row with
	# `_tool_obligations`), without its chain of rule calls. The config key is read directly
	# (what `cfg_tool_result_secrets` answers when it is set; the sidecar always sets it):
	# without it `_decide` answers with the default.
	input.kind == "tool_call"
	data.clawbutler.config.tool_result_secrets
	deny_findings == set()
	hold_findings == set()
} else := {
	"action": "allow", "rule": "allow.plugin", "reason": "No policy rule restricts this tool call",
	"risk": "low", "obligations": {"mask": []},
} if {
	# An allowed plugin-gate call that no other gate decides (`plugin_passthrough`, already
	# evaluated by `hold_findings`): `_default_allow`'s last row (no tool obligations).
	input.kind == "plugin"
	deny_findings == set()
	hold_findings == set()
	not plugin_passthrough
} else := _decide

_decide := _from("deny", _winner(deny_findings)) if {
	deny_findings != set()
} else := _held if {
	hold_findings != set()
} else := d if {
	a := _default_allow
	d := {"action": "allow", "rule": a.rule, "reason": a.reason, "risk": a.risk, "obligations": object.union(_tool_obligations, {"mask": []})}
}

# A hold, or an allow when a live grant covers the call (grants never override a deny).
_held := _from("allow", _granted(_winner(hold_findings))) if {
	count(matching_grants) > 0
} else := _from("hold", _winner(hold_findings))

_risk_rank := {"low": 0, "medium": 1, "high": 2, "critical": 3}

_winner(findings) := sorted[0][2] if {
	sorted := sort([[0 - _risk_rank[f.risk], f.rule, f] | some f in findings])
}

# Values the audit log must mask, from every finding (not just the winner).
_mask := sort({m |
	some f in deny_findings | hold_findings
	some m in object.get(f, "mask", [])
})

_from(action, f) := {
	"action": action,
	"rule": f.rule,
	"reason": f.reason,
	"risk": f.risk,
	"obligations": _obligations(action),
}

_obligations("hold") := object.union(_tool_obligations, {"mask": _mask, "hold_ttl_s": cfg_hold_ttl_s})

_obligations(action) := object.union(_tool_obligations, {"mask": _mask}) if action != "hold"

# MCP tool calls: secrets in a tool's result are masked before the client sees them
# (`[policies] tool_result_secrets = "pass"` turns that off; they are still detected).
_tool_obligations := {"result_secrets": cfg_tool_result_secrets} if {
	input.kind == "tool_call"
} else := {}

_granted(held) := {
	"rule": sprintf("grant:%s", [id]),
	"reason": sprintf("Allowed by standing grant %s (otherwise held: %s)", [id, held.reason]),
	"risk": held.risk,
} if {
	id := sort(matching_grants)[0]
}

_default_allow := {
	"rule": "allow.exec",
	"reason": "No policy rule restricts this command",
	"risk": "medium",
} if {
	input.kind == "exec"
} else := {
	"rule": "allow.model_call",
	"reason": "No policy rule restricts this model call",
	"risk": "low",
} if {
	# The usual model call, without a call to is_model_list (which needs endpoint "models").
	input.kind == "model_call"
	input.model.endpoint != "models"
} else := {
	"rule": "model.list_models",
	"reason": "Listing models is always allowed",
	"risk": "low",
} if {
	is_model_list
} else := {
	"rule": "allow.model_call",
	"reason": "No policy rule restricts this model call",
	"risk": "low",
} if {
	input.kind == "model_call"
} else := {
	"rule": plugin_passthrough.rule,
	"reason": plugin_passthrough.reason,
	"risk": "low",
} if {
	input.kind == "plugin"
	plugin_passthrough
} else := {
	"rule": sprintf("allow.%s", [input.kind]),
	"reason": "No policy rule restricts this tool call",
	"risk": "low",
} if {
	input.kind in {"tool_call", "plugin"}
}
