# Policy data from the [policies] section of clawbutler.toml arrives at
# data.clawbutler.config. Every key has a default here, so the bundle also runs (and its
# tests pass) without any config.
#
# Each key is its own rule so a decision only reads the keys it needs: building the whole
# `cfg` object costs more than most rules (it is still there for policy authors).
package clawbutler

default cfg_model_allowlist := []

cfg_model_allowlist := data.clawbutler.config.model_allowlist

default cfg_max_call_usd := null

cfg_max_call_usd := data.clawbutler.config.max_call_usd

default cfg_workspace_roots := []

cfg_workspace_roots := data.clawbutler.config.workspace_roots

default cfg_high_risk_tools := []

cfg_high_risk_tools := data.clawbutler.config.high_risk_tools

default cfg_high_risk_commands := []

cfg_high_risk_commands := data.clawbutler.config.high_risk_commands

default cfg_hold_ttl_s := 900

cfg_hold_ttl_s := data.clawbutler.config.hold_ttl_s

default cfg_tool_result_secrets := "mask"

cfg_tool_result_secrets := data.clawbutler.config.tool_result_secrets

default cfg_outbound_tools := []

cfg_outbound_tools := data.clawbutler.config.outbound_tools
# The plugin gate's lists (plugin.rego). Empty allow-lists allow nothing; `"*"` allows all.
default cfg_message_allowlist := []

cfg_message_allowlist := data.clawbutler.config.message_allowlist

default cfg_web_allowlist := []

cfg_web_allowlist := data.clawbutler.config.web_allowlist

default cfg_protected_paths := []

cfg_protected_paths := data.clawbutler.config.protected_paths

# MCP servers in OpenClaw that are ClawButler's own MCP endpoint (attach names them cb-<agent>).
default cfg_mcp_proxy_servers := ["cb-*"]

cfg_mcp_proxy_servers := data.clawbutler.config.mcp_proxy_servers

cfg := {
	"model_allowlist": cfg_model_allowlist,
	"max_call_usd": cfg_max_call_usd,
	"workspace_roots": cfg_workspace_roots,
	"high_risk_tools": cfg_high_risk_tools,
	"high_risk_commands": cfg_high_risk_commands,
	"hold_ttl_s": cfg_hold_ttl_s,
	"tool_result_secrets": cfg_tool_result_secrets,
	"outbound_tools": cfg_outbound_tools,
	"message_allowlist": cfg_message_allowlist,
	"web_allowlist": cfg_web_allowlist,
	"protected_paths": cfg_protected_paths,
	"mcp_proxy_servers": cfg_mcp_proxy_servers,
}

# Exact match, or a glob when the pattern has glob characters. `null` delimiters: `*`
# matches any run of characters, `/` and spaces included.
glob_or_exact(pattern, s) if {
	is_string(pattern)
	pattern == s
}

glob_or_exact(pattern, s) if {
	is_string(pattern)
	is_string(s)
	_is_glob(pattern)
	glob.match(pattern, null, s)
}

_is_glob(p) if contains(p, "*")

_is_glob(p) if contains(p, "?")

_is_glob(p) if contains(p, "[")

# `x` with exactly `digits` (2 or 4) decimals: sprintf's %.2f prints whole numbers without them.
fixed(x, digits) := s if {
	scale := {2: 100, 4: 10000}[digits]
	c := round(abs(x) * scale)
	whole := floor(c / scale)
	padded := concat("", ["0000", format_int(c - whole * scale, 10)])
	s := concat("", [_sign(x), format_int(whole, 10), ".", substring(padded, count(padded) - digits, digits)])
}

_sign(x) := "-" if x < 0

_sign(x) := "" if x >= 0
