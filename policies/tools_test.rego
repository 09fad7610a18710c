package clawbutler_test

test_harmless_tool_allowed_low_risk if {
	d := decide(tool_input("search_docs", {"query": "rego"}))
	d.action == "allow"
	d.rule == "allow.tool_call"
	d.risk == "low"
}

# The literal answer for an allowed tool call (decision.rego) is exactly what `_decide` answers,
# with the result-secrets obligation from config (without the key, as here by default, the
# literal is skipped and `_decide` answers with its default).
test_allowed_tool_call_literal_equals_the_general_chain if {
	i := tool_input("search_docs", {"query": "rego"})
	d := data.clawbutler.decision with input as i
	d == data.clawbutler._decide with input as i
	d.obligations == {"mask": [], "result_secrets": "mask"}
	m := data.clawbutler.decision with input as i with data.clawbutler.config as {"tool_result_secrets": "mask"}
	m == d
	p := data.clawbutler.decision with input as i with data.clawbutler.config as {"tool_result_secrets": "pass"}
	p == data.clawbutler._decide with input as i with data.clawbutler.config as {"tool_result_secrets": "pass"}
	p.obligations.result_secrets == "pass"
}

test_openclaw_message_tool_held if held_by(tool_input("message", {"to": "+15550100", "text": "hi"}), "tool.outbound_message")

test_send_email_held if {
	d := decide(tool_input("send_email", {"to": "a@example.com"}))
	d.rule == "tool.outbound_message"
	d.risk == "high"
	contains(d.reason, "'send_email'")
}

test_slack_post_held if held_by(tool_input("slack.postMessage", {"channel": "#ops"}), "tool.outbound_message")

test_reading_mail_allowed if allowed(tool_input("list_emails", {"folder": "inbox"}))

test_payment_tool_held_critical if {
	d := decide(tool_input("stripe_create_payment", {"amount": 100}))
	d.action == "hold"
	d.rule == "tool.payment"
	d.risk == "critical"
}

test_transfer_tool_held if held_by(tool_input("bank_transfer", {"amount": 5}), "tool.payment")

test_configured_high_risk_tool_held if {
	d := data.clawbutler.decision with input as tool_input("browser_navigate", {}) with data.clawbutler.config as {"high_risk_tools": ["browser_*"]}
	d.action == "hold"
	d.rule == "tool.high_risk_configured"
}

test_file_write_outside_workspace_held if {
	d := data.clawbutler.decision with input as tool_input("write", {"path": "/etc/hosts", "content": "x"}) with data.clawbutler.config as {"workspace_roots": ["/home/u/proj"]}
	d.rule == "tool.write_outside_workspace"
}

test_file_write_inside_workspace_allowed if {
	d := data.clawbutler.decision with input as tool_input("write", {"path": "/home/u/proj/a.md", "content": "x"}) with data.clawbutler.config as {"workspace_roots": ["/home/u/proj"]}
	d.action == "allow"
}

test_reading_credentials_through_a_tool_held if held_by(tool_input("read", {"path": "/home/u/proj/.env.local"}), "secrets.credential_access")

# The tool-call fast path of `hold_findings` (no `command`, no path-like argument) must not hide
# a command or credential rule: a tool call with a command is still judged as a command, one
# with a path-like argument still by the credential rule, and one with neither by the tool rules.
test_a_tool_call_carrying_a_command_is_judged_as_a_command if held_by(tool_input("run_shell", {"command": "sudo ls /root"}), "exec.privilege_escalation")

test_a_tool_call_with_a_credential_path_is_held if held_by(tool_input("fetch_file", {"file": "/home/u/.ssh/id_rsa"}), "secrets.credential_access")

test_a_tool_call_with_neither_is_decided_by_the_tool_rules if {
	allowed(tool_input("echo", {"text": "sudo rm -rf / ~/.ssh/id_rsa", "count": 3}))
	held_by(tool_input("send_message", {"to": "+15550100", "text": "hi"}), "tool.outbound_message")
}
