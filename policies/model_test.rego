package clawbutler_test

test_model_listing_is_allowed if {
	inp := object.union(model_input(""), {"model": {"upstream": "openai", "endpoint": "models", "name": "", "stream": false}})
	d := data.clawbutler.decision with input as inp with data.clawbutler.config as {"model_allowlist": ["gpt-4o"], "max_call_usd": 0}
	d.action == "allow"
	d.rule == "model.list_models"
}

test_model_listing_allowed_when_budget_exhausted if {
	inp := object.union(model_input(""), {
		"model": {"upstream": "openai", "endpoint": "models", "name": "", "stream": false},
		"budgets": [{"id": "b", "scope": "global", "window": "daily", "spent_usd": 9, "limit_usd": 5, "remaining_usd": -4}],
	})
	decide(inp).action == "allow"
}

test_plain_model_call_allowed_low_risk if {
	d := decide(model_input("gpt-4o"))
	d.action == "allow"
	d.rule == "allow.model_call"
	d.risk == "low"
}

test_no_allowlist_allows_any_model if {
	allowed(model_input("some-new-model"))
}

test_model_off_allowlist_denied if {
	d := data.clawbutler.decision with input as model_input("o1-pro") with data.clawbutler.config as {"model_allowlist": ["gpt-4o", "claude-*"]}
	d.action == "deny"
	d.rule == "model.not_allowed"
	contains(d.reason, "'o1-pro'")
	contains(d.reason, "gpt-4o, claude-*")
}

test_model_allowlist_exact_and_glob if {
	cfg := {"model_allowlist": ["gpt-4o", "claude-*"]}
	d1 := data.clawbutler.decision with input as model_input("gpt-4o") with data.clawbutler.config as cfg
	d1.action == "allow"
	d2 := data.clawbutler.decision with input as model_input("claude-sonnet-4") with data.clawbutler.config as cfg
	d2.action == "allow"
	d3 := data.clawbutler.decision with input as model_input("gpt-4o-mini") with data.clawbutler.config as cfg
	d3.action == "deny"
}

test_model_allowlist_matches_upstream_qualified_name if {
	d := data.clawbutler.decision with input as model_input("gpt-4o") with data.clawbutler.config as {"model_allowlist": ["openai/*"]}
	d.action == "allow"
}

test_cost_over_cap_denied if {
	inp := object.union(model_input("gpt-4o"), {"cost": {"estimate_usd": 1.25}})
	d := data.clawbutler.decision with input as inp with data.clawbutler.config as {"max_call_usd": 0.5}
	d.action == "deny"
	d.rule == "cost.per_call_cap"
	contains(d.reason, "$1.2500")
	contains(d.reason, "$0.50")
}

test_cost_at_or_under_cap_allowed if {
	inp := object.union(model_input("gpt-4o"), {"cost": {"estimate_usd": 0.5}})
	d := data.clawbutler.decision with input as inp with data.clawbutler.config as {"max_call_usd": 0.5}
	d.action == "allow"
}

test_unknown_cost_not_denied_by_cap if {
	inp := object.union(model_input("gpt-4o"), {"cost": {"estimate_usd": null}})
	d := data.clawbutler.decision with input as inp with data.clawbutler.config as {"max_call_usd": 0.5}
	d.action == "allow"
}

test_exhausted_budget_denied_with_window_phrase if {
	inp := object.union(model_input("gpt-4o"), {"budgets": [
		{"id": "agent:main@daily", "scope": "agent:main", "window": "daily", "spent_usd": 5, "limit_usd": 5, "remaining_usd": 0},
		{"id": "global@monthly", "scope": "global", "window": "monthly", "spent_usd": 10, "limit_usd": 100, "remaining_usd": 90},
	]})
	d := decide(inp)
	d.action == "deny"
	d.rule == "budget.exhausted"
	contains(d.reason, "daily limit reached for agent:main")
	contains(d.reason, "spent $5.00 of $5.00")
}

test_budget_with_money_left_allows if {
	inp := object.union(model_input("gpt-4o"), {"budgets": [{"id": "b", "scope": "global", "window": "weekly", "spent_usd": 1.5, "limit_usd": 5, "remaining_usd": 3.5}]})
	allowed(inp)
}

# An entry equal to the model name allows it, even when the entry has glob characters.
test_model_allowlist_entry_equal_to_name if {
	d := data.clawbutler.decision with input as model_input("my-model[beta]") with data.clawbutler.config as {"model_allowlist": ["my-model[beta]"]}
	d.action == "allow"
}

test_cfg_reports_defaults_and_config if {
	data.clawbutler.cfg.hold_ttl_s == 900
	data.clawbutler.cfg.model_allowlist == []
	c := data.clawbutler.cfg with data.clawbutler.config as {"hold_ttl_s": 60, "max_call_usd": 1}
	c.hold_ttl_s == 60
	c.max_call_usd == 1
	c.workspace_roots == []
}

# The literal answer for an allowed model call (decision.rego) is exactly what `_decide`
# answers, with or without a config, an allow-list, a cap or budgets with money left.
test_allowed_model_call_literal_equals_the_general_chain if {
	cfgs := [{}, {"model_allowlist": ["gpt-4o", "claude-*"], "max_call_usd": 0.5, "high_risk_commands": ["git push*"]}]
	inputs := [
		model_input("gpt-4o"),
		model_input("claude-3-opus"),
		object.union(model_input("gpt-4o"), {"budgets": [{"id": "b", "scope": "global", "window": "daily", "spent_usd": 1, "limit_usd": 5, "remaining_usd": 4}]}),
	]
	every cfg in cfgs {
		every i in inputs {
			d := data.clawbutler.decision with input as i with data.clawbutler.config as cfg
			d == data.clawbutler._decide with input as i with data.clawbutler.config as cfg
			d.rule == "allow.model_call"
		}
	}
}
