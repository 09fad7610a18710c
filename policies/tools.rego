# Tool calls (MCP and the plugin gate): outbound messages, payments, file writes outside the
# workspace, and tools the operator marked high-risk in config. OpenClaw's own message and file
# tools reaching the plugin gate have finer rules of their own (plugin.rego, `_plugin_own_rule`);
# MCP tools reaching it are decided here exactly as the MCP proxy decides them.
package clawbutler

tool_name := lower(input.tool.name) if input.kind in {"tool_call", "plugin"}

# Name parts: send_email, send-email, mail.send and slack:post all split into words.
_tool_parts := {p |
	some p in split(replace(replace(replace(replace(tool_name, "-", "_"), ".", "_"), ":", "_"), "/", "_"), "_")
	p != ""
}

_message_names := {"message", "send", "email", "sms", "slack", "tweet", "reply", "notify"}

_message_markers := ["send", "email", "mail", "slack", "discord", "telegram", "whatsapp", "sms", "tweet", "post_message", "postmessage", "imessage"]

_read_verbs := {"read", "list", "get", "search", "fetch", "find", "query", "lookup", "view", "draft", "drafts"}

_write_verbs := {"send", "post", "reply", "forward", "publish"}

_read_only_tool if {
	some p in _tool_parts
	p in _read_verbs
	count(_tool_parts & _write_verbs) == 0
	not contains(tool_name, "send")
}

is_message_tool if tool_name in _message_names

is_message_tool if {
	some m in _message_markers
	contains(tool_name, m)
	not _read_only_tool
}

tool_holds contains f if {
	is_message_tool
	not _plugin_own_rule
	f := {
		"rule": "tool.outbound_message",
		"reason": sprintf("Sending a message (tool '%s') needs a human's approval", [input.tool.name]),
		"risk": "high",
	}
}

is_payment_tool if {
	some p in _tool_parts
	p in _pay_words
}

is_payment_tool if {
	some m in ["stripe", "paypal", "payment", "braintree", "adyen", "wallet"]
	contains(tool_name, m)
	not _read_only_tool
}

tool_holds contains f if {
	is_payment_tool
	f := {
		"rule": "tool.payment",
		"reason": sprintf("Moving money (tool '%s') needs a human's approval", [input.tool.name]),
		"risk": "critical",
	}
}

tool_holds contains f if {
	input.kind in {"tool_call", "plugin"}
	some p in cfg_high_risk_tools
	glob_or_exact(p, input.tool.name)
	f := {
		"rule": "tool.high_risk_configured",
		"reason": sprintf("Tool '%s' needs a human's approval (configured as high-risk)", [input.tool.name]),
		"risk": "high",
	}
}

# File tools (OpenClaw's write/edit/apply_patch, MCP filesystem servers).
_file_write_tools := {"write", "edit", "apply_patch", "write_file", "edit_file", "create_file", "delete_file", "move_file", "create_directory", "remove_file"}

tool_holds contains f if {
	tool_name in _file_write_tools
	not _plugin_own_rule
	count(workspace_roots) > 0
	some k in ["path", "file_path", "filePath", "destination", "target"]
	p := input.tool.args[k]
	is_string(p)
	_absolute(p)
	not under_workspace(p)
	f := {
		"rule": "tool.write_outside_workspace",
		"reason": sprintf("Writing to %s, outside the agent's workspace, needs a human's approval", [p]),
		"risk": "high",
	}
}
