# Policy data from the [policies] section of clawbutler.toml arrives at
# data.clawbutler.config. Every key has a default here, so the bundle also runs (and its
# tests pass) without any config.
package clawbutler

default _user_config := {}

_user_config := data.clawbutler.config

cfg := {
	"model_allowlist": object.get(_user_config, "model_allowlist", []),
	"max_call_usd": object.get(_user_config, "max_call_usd", null),
	"workspace_roots": object.get(_user_config, "workspace_roots", []),
	"high_risk_tools": object.get(_user_config, "high_risk_tools", []),
	"high_risk_commands": object.get(_user_config, "high_risk_commands", []),
	"hold_ttl_s": object.get(_user_config, "hold_ttl_s", 900),
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
