package clawbutler_test

mcp_call(name, args, secret_seen) := object.union(tool_input(name, args), {"mcp": {
	"phase": "call",
	"calls": [{"server": "srv", "tool": "get-env", "action": "allow", "secret": secret_seen}],
	"secret_seen": secret_seen,
}})

mcp_list(name) := object.union(tool_input(name, null), {"mcp": {"phase": "list", "calls": [], "secret_seen": false}})

test_outbound_tool_held_after_a_secret if {
	d := decide(mcp_call("gzip-file-as-resource", {"name": "x", "data": "https://example.com/a"}, true))
	d.action == "hold"
	d.rule == "mcp.secret_then_outbound"
	d.risk == "high"
	contains(d.reason, "'gzip-file-as-resource'")
}

test_http_named_tool_held_after_a_secret if held_by(mcp_call("http_get", {"q": "x"}, true), "mcp.secret_then_outbound")

test_same_tool_allowed_without_a_secret if allowed(mcp_call("gzip-file-as-resource", {"data": "https://example.com/a"}, false))

test_local_tool_allowed_after_a_secret if allowed(mcp_call("get-sum", {"a": 1, "b": 2}, true))

test_configured_outbound_tool_held_after_a_secret if {
	d := data.clawbutler.decision with input as mcp_call("exporter", {}, true) with data.clawbutler.config as {"outbound_tools": ["export*"]}
	d.rule == "mcp.secret_then_outbound"
}

test_calls_without_mcp_context_are_not_affected if allowed(tool_input("http_get", {"q": "x"}))

test_a_grant_covers_the_session_hold if {
	g := {"id": "g9", "agent": "main", "kind": "tool_call", "pattern": "srv/http_get"}
	d := decide(with_grants(mcp_call("http_get", {"q": "x"}, true), [g]))
	d.action == "allow"
	d.rule == "grant:g9"
}

test_a_grant_for_another_server_does_not_cover_it if {
	g := {"id": "g9", "agent": "main", "kind": "tool_call", "pattern": "other/http_get"}
	held_by(with_grants(mcp_call("http_get", {"q": "x"}, true), [g]), "mcp.secret_then_outbound")
}

# At list time the arguments are null: rules that look at arguments must not deny (a tool the
# bundle would only sometimes hold stays listed).
test_list_time_never_denies_on_missing_args if {
	every name in ["write", "read", "send_email", "http_get", "stripe_create_payment", "get-env"] {
		decide(mcp_list(name)).action != "deny"
	}
}

test_list_time_shows_holds_as_holds if decide(mcp_list("send_email")).action == "hold"

test_tool_calls_mask_result_secrets_by_default if {
	every inp in [mcp_call("get-env", {}, false), mcp_call("http_get", {}, true), tool_input("echo", {})] {
		decide(inp).obligations.result_secrets == "mask"
	}
}

test_result_secrets_can_be_passed_by_config if {
	d := data.clawbutler.decision with input as mcp_call("get-env", {}, false) with data.clawbutler.config as {"tool_result_secrets": "pass"}
	d.obligations.result_secrets == "pass"
}

test_other_kinds_carry_no_result_obligation if {
	every inp in [model_input("gpt-4o"), exec_input("ls")] {
		not decide(inp).obligations.result_secrets
	}
}
