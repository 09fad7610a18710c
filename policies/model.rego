# Model calls: allow-list, per-call cost cap, exhausted budgets.
#
# Cost note: a decision runs on every model call, so the common case (an allowed model, a cost
# under the cap, budgets with money left) must fail each rule at its first cheap test.
package clawbutler

# `GET /v1/models`: always allowed, whatever the allow-list or budgets say.
is_model_list if {
	input.kind == "model_call"
	input.model.endpoint == "models"
	object.get(input.model, "name", "") == ""
}

# An entry equal to the model name (or `upstream/name`) allows it at once; glob entries are
# only tried when no entry is equal (glob matching is the expensive part).
model_denies contains f if {
	input.kind == "model_call"
	# Read directly (not via cfg_model_allowlist: one rule call less); absent = [] = no list.
	allow := data.clawbutler.config.model_allowlist
	allow != []
	# The usual model is on the list: fail here, before the builtin call below (which only
	# matters when `name` is missing).
	not input.model.name in allow
	name := object.get(input.model, "name", "")
	not name in allow
	not is_model_list
	not _qualified_model in allow
	not _model_glob_allowed
	f := {
		"rule": "model.not_allowed",
		"reason": sprintf("Model '%s' is not on this sidecar's allow-list (allowed: %s)", [name, concat(", ", allow)]),
		"risk": "medium",
	}
}

_qualified_model := concat("/", [object.get(input.model, "upstream", ""), object.get(input.model, "name", "")])

_allow_globs := [p | some p in cfg_model_allowlist; _is_glob(p)]

_model_glob_allowed if {
	some p in _allow_globs
	glob.match(p, null, input.model.name)
}

_model_glob_allowed if {
	some p in _allow_globs
	glob.match(p, null, _qualified_model)
}

call_denies contains f if {
	est := input.cost.estimate_usd
	cap := data.clawbutler.config.max_call_usd
	# The usual call is under the cap: fail on the comparison before the type checks (which
	# matter because Rego orders values of different types, e.g. any number > null).
	est > cap
	is_number(est)
	is_number(cap)
	not is_model_list
	f := {
		"rule": "cost.per_call_cap",
		"reason": sprintf("This call's estimated cost ($%s) exceeds the per-call cap of $%s; lower max_tokens or ask an operator", [fixed(est, 4), fixed(cap, 2)]),
		"risk": "high",
	}
}

# The reason contains "<window> limit reached": OpenClaw recognises that phrase, shows the text
# to the user and does not retry (see docs/policy-input.md).
call_denies contains f if {
	some b in input.budgets
	b.remaining_usd <= 0
	not is_model_list
	f := {
		"rule": "budget.exhausted",
		"reason": sprintf("ClawButler budget: %s limit reached for %s (spent $%s of $%s). Ask an operator to raise it, or wait for the window to reset.", [b.window, b.scope, fixed(b.spent_usd, 2), fixed(b.limit_usd, 2)]),
		"risk": "medium",
	}
}
