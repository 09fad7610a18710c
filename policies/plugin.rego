# The plugin gate: OpenClaw's own tools, asked about by the ClawButler plugin's
# before_tool_call hook (kind "plugin", docs/plugin.md). The engine derives what each call
# touches (`input.plugin.family`, `paths`, `recipients`, `hosts`; docs/policy-input.md), so
# these rules compare, they do not parse.
#
# Per family:
#   file_write (write, edit, apply_patch): outside the workspace -> hold; credential files and
#     OpenClaw's or ClawButler's own config -> hold (critical), even inside the workspace;
#   message: a recipient off `message_allowlist` (or a broadcast) -> hold;
#   browser, web (web_fetch, web_search): a host off `web_allowlist` -> hold;
#   spawn (sessions_spawn): always held;
#   exec: the shell rules of exec.rego, on `tool.args.command` (with engine-derived features);
#   mcp (`<server>__<tool>`): the tool rules of tools.rego, as the MCP proxy decides them; a
#     server matching `mcp_proxy_servers` (ClawButler's own MCP endpoint) passes: the proxy
#     decides the call when it arrives, so it is never asked about twice;
#   tool_search (the `tool_call` wrapper): passes; the tool it names passes this gate itself;
#   everything else: allowed (and audited) unless a generic rule (credentials in a path
#   argument, configured high-risk tools) says otherwise.
package clawbutler

# OpenClaw's message and file tools: tools.rego's name-based rules leave them to these.
_plugin_own_rule if {
	input.kind == "plugin"
	input.plugin.family in {"message", "file_write"}
}

# Calls another gate decides (see the header); decision.rego answers them with an allow naming
# the rule, unless a deny applies.
plugin_passthrough := {
	"rule": "plugin.mcp_via_proxy",
	"reason": "This MCP tool is served by ClawButler's MCP endpoint, which decides the call when it arrives",
} if {
	input.kind == "plugin"
	input.plugin.family == "mcp"
	some p in cfg_mcp_proxy_servers
	glob_or_exact(p, input.tool.server)
} else := {
	"rule": "plugin.tool_search",
	"reason": "Tool search's call wrapper: the tool it names is decided on its own",
} if {
	input.kind == "plugin"
	input.plugin.family == "tool_search"
}

# The rules below add to `_plugin_holds`: a tool call of another kind pays one body for all.
tool_holds contains f if {
	input.kind == "plugin"
	some f in _plugin_holds
}

# --- files -------------------------------------------------------------------------------

_plugin_holds contains f if {
	input.kind == "plugin"
	input.plugin.family == "file_write"
	some p in input.plugin.paths
	not _plugin_path_inside(p)
	f := {
		"rule": "plugin.file_outside_workspace",
		"reason": _outside_reason(p),
		"risk": "high",
	}
}

# Absolute (or ~) and under the workspace or a configured root.
_plugin_path_inside(p) if {
	_absolute(p)
	under_workspace(p)
}

_outside_reason(p) := sprintf("Writing to %s, outside the agent's workspace, needs a human's approval", [p]) if {
	_absolute(p)
} else := sprintf("Writing to %s needs a human's approval: the agent's workspace is not known, so the path cannot be placed", [p])

_plugin_holds contains f if {
	input.kind == "plugin"
	input.plugin.family == "file_write"
	some p in input.plugin.paths
	_protected_path(p)
	f := {
		"rule": "plugin.file_protected",
		"reason": sprintf("Changing %s (credentials or agent configuration) needs a human's approval", [p]),
		"risk": "critical",
	}
}

# Files an agent must not change without a human, wherever they are: credentials (the markers
# of secrets.rego: SSH keys, cloud credentials, .env files, ...), OpenClaw's configuration and
# state (openclaw.json and its backups, credentials, auth profiles, exec approvals, the state
# database), and configured `protected_paths` (globs; add ClawButler's data dir there).
_protected_path(p) if is_credential_path(p)

_protected_path(p) if {
	parts := split(p, "/")
	base := parts[count(parts) - 1]
	_openclaw_file(base)
}

_protected_path(p) if {
	some marker in ["/.openclaw/credentials/", "/.openclaw/secrets/", "/.openclaw/state/", "/.openclaw/identity/"]
	contains(p, marker)
}

_protected_path(p) if {
	some g in cfg_protected_paths
	glob_or_exact(g, p)
}

_openclaw_file(base) if startswith(base, "openclaw.json")

_openclaw_file(base) if base in {"auth-profiles.json", "exec-approvals.json", "openclaw.sqlite"}

# --- messages ------------------------------------------------------------------------------

_plugin_holds contains f if {
	input.kind == "plugin"
	input.plugin.family == "message"
	off := [r | some r in input.plugin.recipients; not _listed(cfg_message_allowlist, r)]
	off != []
	f := {
		"rule": "plugin.message_recipient",
		"reason": sprintf("Sending a message to %s (not on the message allow-list) needs a human's approval", [concat(", ", off)]),
		"risk": "high",
	}
}

_plugin_holds contains f if {
	input.kind == "plugin"
	input.plugin.family == "message"
	input.tool.args.action == "broadcast"
	f := {
		"rule": "plugin.message_recipient",
		"reason": "Broadcasting a message to every configured target needs a human's approval",
		"risk": "high",
	}
}

# --- browser and web -----------------------------------------------------------------------

_plugin_holds contains f if {
	input.kind == "plugin"
	input.plugin.family in {"browser", "web"}
	off := [h | some h in input.plugin.hosts; not _listed(cfg_web_allowlist, h)]
	off != []
	f := {
		"rule": "plugin.web_domain",
		"reason": sprintf("Opening %s (not on the web allow-list) needs a human's approval", [concat(", ", off)]),
		"risk": "medium",
	}
}

# --- new agents ----------------------------------------------------------------------------

_plugin_holds contains f if {
	input.kind == "plugin"
	input.plugin.family == "spawn"
	f := {
		"rule": "plugin.spawn",
		"reason": sprintf("Starting another agent session (%s) needs a human's approval", [input.tool.name]),
		"risk": "high",
	}
}

# An allow-list entry: exact, or a glob (`*.example.com`, `+1555*`); `*` allows everything.
_listed(list, x) if {
	some entry in list
	glob_or_exact(entry, x)
}
