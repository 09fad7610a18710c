# Tool calls (MCP and the plugin gate): outbound messages, payments, file writes outside the
# workspace, and tools the operator marked high-risk in config. OpenClaw's own message and file
# tools reaching the plugin gate have finer rules of their own (plugin.rego, `_plugin_own_rule`);
# MCP tools reaching it are decided here exactly as the MCP proxy decides them.
#
# Cost note: the engine derives the name's parts and which declared words and substrings it
# holds (`input.tool.name_features`, from `tool_feature_words` / `tool_feature_substrings`
# below), so the name rules are only looked at when one of their words or substrings is there
# (`name_features.hit`); most tools name none. Without the features (`with input as` in tests) the
# `_d_*` rules derive the same values, and every rule runs.
package clawbutler

tool_name := lower(input.tool.name) if input.kind in {"tool_call", "plugin"}

# Name parts: send_email, send-email, mail.send and slack:post all split into words.
_tool_parts := input.tool.name_features.parts if {
	input.tool.name_features
} else := _d_tool_parts

_d_tool_parts := {p | some p in _name_pieces(tool_name)}

# The parts in order.
_name_pieces(name) := [p |
	some p in split(replace(replace(replace(replace(name, "-", "_"), ".", "_"), ":", "_"), "/", "_"), "_")
	p != ""
]

# Declared to the engine, which reports for every tool call, per group, the words among the
# name's parts (`name_features.words`) and the substrings in the lower-cased name
# (`name_features.hits`), found in Rust (docs/policy-input.md §1). `names` holds the first part
# of every name the exact-name rules list (a tool named exactly so has that part; the first,
# because the last is often a plain noun: `file` of write_file would also open the gate for
# read_file), so an empty `words` and `hits` prove that no name rule can fire (tests check the
# groups).
tool_feature_words := {
	"names": {_name_pieces(n)[0] | some n in _exact_tool_names},
	"payment": _pay_words,
}

tool_feature_substrings := {
	"message": {m | some m in _message_markers},
	"payment": {m | some m in _payment_markers},
}

_exact_tool_names := _message_names | _file_write_tools

# What the engine derives, derived in Rego (a unit test checks both agree).
tool_name_features_derived := {
	"name": tool_name,
	"parts": _d_tool_parts,
	"words": _d_tool_words,
	"hits": _d_tool_hits,
	"hit": _d_tool_hit,
}

_d_tool_hit := true if _d_tool_words != {} else := _d_tool_hits != {}

_d_tool_words := {group: found |
	some group, members in tool_feature_words
	found := _d_tool_parts & members
	found != set()
}

_d_tool_hits := {group: found |
	some group, members in tool_feature_substrings
	found := {m | some m in members; contains(tool_name, m)}
	found != set()
}

# Skipped only when the engine found none of the name rules' words or substrings (then no rule
# of `_tool_name_holds` can fire). Without features the test is undefined, so `not` passes and
# every rule runs. (Written out rather than as a rule: a rule call costs more than the test.)
tool_holds contains f if {
	not input.tool.name_features.hit == false
	some f in _tool_name_holds
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
	_message_marker
	not _read_only_tool
}

# A marker in the name: the engine's `hits` tell, else a loop over the rule's own list (not the
# declaration, which the engine ignores when malformed). An `else` chain: with features the
# loop is never run.
_message_marker := true if {
	input.tool.name_features.hits.message
} else := false if {
	input.tool.name_features
} else := true if {
	some m in _message_markers
	contains(tool_name, m)
}

_tool_name_holds contains f if {
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

_payment_markers := ["stripe", "paypal", "payment", "braintree", "adyen", "wallet"]

is_payment_tool if {
	_payment_marker
	not _read_only_tool
}

_payment_marker := true if {
	input.tool.name_features.hits.payment
} else := false if {
	input.tool.name_features
} else := true if {
	some m in _payment_markers
	contains(tool_name, m)
}

_tool_name_holds contains f if {
	is_payment_tool
	f := {
		"rule": "tool.payment",
		"reason": sprintf("Moving money (tool '%s') needs a human's approval", [input.tool.name]),
		"risk": "critical",
	}
}

# The config key read directly (absent = no patterns), first: one rule call less on every tool
# call, and most configurations list none.
tool_holds contains f if {
	some p in data.clawbutler.config.high_risk_tools
	input.kind in {"tool_call", "plugin"}
	glob_or_exact(p, input.tool.name)
	f := {
		"rule": "tool.high_risk_configured",
		"reason": sprintf("Tool '%s' needs a human's approval (configured as high-risk)", [input.tool.name]),
		"risk": "high",
	}
}

# File tools (OpenClaw's write/edit/apply_patch, MCP filesystem servers).
_file_write_tools := {"write", "edit", "apply_patch", "write_file", "edit_file", "create_file", "delete_file", "move_file", "create_directory", "remove_file"}

_tool_name_holds contains f if {
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
