# Model calls: allow-list, per-call cost cap, exhausted budgets.
package clawbutler

# `GET /v1/models`: always allowed, whatever the allow-list or budgets say.
is_model_list if {
	input.kind == "model_call"
	input.model.endpoint == "models"
	object.get(input.model, "name", "") == ""
}

model_denies contains f if {
	input.kind == "model_call"
	not is_model_list
	count(cfg.model_allowlist) > 0
	name := object.get(input.model, "name", "")
	not name in _allow_exact
	not _qualified_model in _allow_exact
	not _model_glob_allowed
	f := {
		"rule": "model.not_allowed",
		"reason": sprintf("Model '%s' is not on this sidecar's allow-list (allowed: %s)", [name, concat(", ", cfg.model_allowlist)]),
		"risk": "medium",
	}
}

# Exact entries are a set lookup; globs are only tried when no exact entry matches (function
# calls and glob compiles are the expensive part of a decision).
_allow_exact := {p |
	some p in cfg.model_allowlist
	not contains(p, "*")
	not contains(p, "?")
	not contains(p, "[")
}

_allow_globs := [p | some p in cfg.model_allowlist; not p in _allow_exact]

_qualified_model := concat("/", [object.get(input.model, "upstream", ""), object.get(input.model, "name", "")])

_model_glob_allowed if {
	some p in _allow_globs
	glob.match(p, null, input.model.name)
}

_model_glob_allowed if {
	some p in _allow_globs
	glob.match(p, null, _qualified_model)
}

call_denies contains f if {
	not is_model_list
	cap := cfg.max_call_usd
	is_number(cap)
	est := input.cost.estimate_usd
	is_number(est)
	est > cap
	f := {
		"rule": "cost.per_call_cap",
		"reason": sprintf("This call's estimated cost ($%s) exceeds the per-call cap of $%s; lower max_tokens or ask an operator", [fixed(est, 4), fixed(cap, 2)]),
		"risk": "high",
	}
}

# The reason contains "<window> limit reached": OpenClaw recognises that phrase, shows the text
# to the user and does not retry (see docs/policy-input.md).
call_denies contains f if {
	not is_model_list
	some b in input.budgets
	b.remaining_usd <= 0
	f := {
		"rule": "budget.exhausted",
		"reason": sprintf("ClawButler budget: %s limit reached for %s (spent $%s of $%s). Ask an operator to raise it, or wait for the window to reset.", [b.window, b.scope, fixed(b.spent_usd, 2), fixed(b.limit_usd, 2)]),
		"risk": "medium",
	}
}
