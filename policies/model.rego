# Model calls: allow-list, per-call cost cap, exhausted budgets.
package clawbutler

# `GET /v1/models`: always allowed, whatever the allow-list or budgets say.
is_model_list if {
	input.kind == "model_call"
	input.model.endpoint == "models"
	object.get(input.model, "name", "") == ""
}

deny_findings contains f if {
	input.kind == "model_call"
	not is_model_list
	count(cfg.model_allowlist) > 0
	name := object.get(input.model, "name", "")
	not _model_allowed(name)
	f := {
		"rule": "model.not_allowed",
		"reason": sprintf("Model '%s' is not on this sidecar's allow-list (allowed: %s)", [name, concat(", ", cfg.model_allowlist)]),
		"risk": "medium",
	}
}

_model_allowed(name) if {
	some p in cfg.model_allowlist
	glob_or_exact(p, name)
}

_model_allowed(name) if {
	some p in cfg.model_allowlist
	glob_or_exact(p, concat("/", [input.model.upstream, name]))
}

deny_findings contains f if {
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
deny_findings contains f if {
	not is_model_list
	some b in input.budgets
	b.remaining_usd <= 0
	f := {
		"rule": "budget.exhausted",
		"reason": sprintf("ClawButler budget: %s limit reached for %s (spent $%s of $%s). Ask an operator to raise it, or wait for the window to reset.", [b.window, b.scope, fixed(b.spent_usd, 2), fixed(b.limit_usd, 2)]),
		"risk": "medium",
	}
}
