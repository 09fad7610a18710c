# MCP sessions (tool calls through /mcp/agent/{agent}): rules on what happened earlier in the
# same MCP session (`input.mcp`, docs/policy-input.md). Calls from other paths carry no
# `input.mcp`, so none of these rules apply to them.
#
# At list time (`input.mcp.phase == "list"`) the arguments are null and the session context is
# empty: a deny finding there hides the tool from `tools/list`, so rules that depend on the
# arguments or the session must not deny when they are absent (they never fire here).
package clawbutler

# Words in a tool's name that mean it sends something out of the box.
_outbound_words := {
	"http", "https", "fetch", "request", "post", "put", "upload", "webhook", "url", "curl", "wget",
	"navigate", "browse", "download", "push", "publish", "share", "send", "email", "mail", "message",
	"slack", "tweet", "sms", "notify", "gist", "paste", "telegram", "discord", "whatsapp",
}

# An outbound tool: a message or payment tool, a name with an outbound word, a URL among its
# (top-level) arguments, or a name the operator listed in `outbound_tools`.
is_outbound_tool if is_message_tool

is_outbound_tool if is_payment_tool

is_outbound_tool if {
	some p in _tool_parts
	p in _outbound_words
}

is_outbound_tool if {
	is_object(input.tool.args)
	some v in input.tool.args
	_urlish(v)
}

is_outbound_tool if {
	some p in cfg_outbound_tools
	glob_or_exact(p, input.tool.name)
}

_url_schemes := ["http://", "https://", "ftp://", "ws://", "wss://"]

_urlish(v) if {
	is_string(v)
	some p in _url_schemes
	startswith(lower(v), p)
}

_urlish(v) if {
	is_array(v)
	some s in v
	is_string(s)
	some p in _url_schemes
	startswith(lower(s), p)
}

# After a tool in this MCP session returned a credential (a key, a token, a PEM block), any
# outbound tool waits for a human for the rest of the session: that is how a prompt-injected
# agent would send the secret away.
tool_holds contains f if {
	input.kind == "tool_call"
	input.mcp.secret_seen == true
	input.mcp.phase == "call"
	is_outbound_tool
	f := {
		"rule": "mcp.secret_then_outbound",
		"reason": sprintf("An earlier tool result in this MCP session carried a secret; sending data out with '%s' needs a human's approval", [input.tool.name]),
		"risk": "high",
	}
}
