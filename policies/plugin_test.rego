# The plugin gate's rules (plugin.rego). The engine derives `family`, `paths`, `recipients`,
# `hosts` and `grant_args` in Rust; under `with input as` these tests give them as the engine
# would (policy/tests/plugin.rs checks the same cases through the engine).
package clawbutler_test

ws := "/home/u/.openclaw/workspace"

plugin_input(name, args, facts) := {
	"version": 1, "kind": "plugin", "agent": "main", "session": "agent:main:main", "trace_id": "t4", "now": now,
	"tool": {"server": null, "name": name, "args": args},
	"plugin": object.union(
		{
			"tool_name": name, "workspace": ws, "run_id": "r1", "tool_call_id": "call1", "trigger": "user",
			"requester": {"sender_is_owner": true}, "derived_paths": [],
			"family": "other", "paths": [], "recipients": [], "hosts": [], "grant_args": null,
		},
		facts,
	),
	"cost": {}, "budgets": [], "grants": [],
}

write_input(path) := plugin_input("write", {"path": path, "content": "x"}, {"family": "file_write", "paths": [path], "grant_args": path})

# --- files

test_write_inside_workspace_allowed if {
	d := decide(write_input(concat("/", [ws, "notes.md"])))
	d.action == "allow"
	d.rule == "allow.plugin"
	d.risk == "low"
}

test_write_outside_workspace_held if {
	d := decide(write_input("/etc/hosts"))
	d.action == "hold"
	d.rule == "plugin.file_outside_workspace"
	d.risk == "high"
	contains(d.reason, "/etc/hosts")
}

test_write_under_a_configured_root_allowed if {
	d := data.clawbutler.decision with input as write_input("/srv/shared/out.txt")
		with data.clawbutler.config as {"workspace_roots": ["/srv/shared"]}
	d.action == "allow"
}

test_write_next_to_the_workspace_held if held_by(write_input(concat("", [ws, "2/x"])), "plugin.file_outside_workspace")

test_relative_path_with_unknown_workspace_held if {
	inp := plugin_input("write", {"path": "x.txt", "content": "x"}, {"family": "file_write", "paths": ["x.txt"], "workspace": null})
	d := decide(inp)
	d.rule == "plugin.file_outside_workspace"
	contains(d.reason, "not known")
}

test_ssh_key_write_held_critical if {
	d := decide(write_input("/home/u/.ssh/authorized_keys"))
	d.action == "hold"
	d.rule == "plugin.file_protected"
	d.risk == "critical"
}

test_dotenv_inside_workspace_held if {
	d := decide(write_input(concat("/", [ws, ".env"])))
	d.action == "hold"
	d.rule == "plugin.file_protected"
}

test_openclaw_config_held if held_by(write_input("/home/u/.openclaw/openclaw.json"), "plugin.file_protected")

test_openclaw_config_backup_held if held_by(write_input("/home/u/.openclaw/openclaw.json.bak"), "plugin.file_protected")

test_aws_credentials_held if held_by(write_input("~/.aws/credentials"), "plugin.file_protected")

test_configured_protected_path_held if {
	d := data.clawbutler.decision with input as write_input(concat("/", [ws, "ops/deploy.key"]))
		with data.clawbutler.config as {"protected_paths": ["*/ops/*.key"]}
	d.rule == "plugin.file_protected"
}

test_apply_patch_each_target_checked if {
	inp := plugin_input("apply_patch", {"input": "*** Begin Patch\n..."}, {"family": "file_write", "paths": [concat("/", [ws, "a.md"]), "/etc/cron.d/x"]})
	held_by(inp, "plugin.file_outside_workspace")
}

test_edit_inside_allowed if allowed(plugin_input("edit", {"path": "a.md", "edits": []}, {"family": "file_write", "paths": [concat("/", [ws, "a.md"])]}))

test_reading_a_key_held if {
	inp := plugin_input("read", {"path": "~/.ssh/id_ed25519"}, {"family": "file_read", "paths": ["~/.ssh/id_ed25519"]})
	held_by(inp, "secrets.credential_access")
}

test_reading_inside_workspace_allowed if allowed(plugin_input("read", {"path": "a.md"}, {"family": "file_read", "paths": [concat("/", [ws, "a.md"])]}))

# --- messages

message_input(args, recipients) := plugin_input("message", args, {"family": "message", "recipients": recipients, "grant_args": concat(" ", sort(recipients))})

test_message_off_allowlist_held if {
	d := decide(message_input({"action": "send", "target": "+15550100", "message": "hi"}, ["+15550100"]))
	d.action == "hold"
	d.rule == "plugin.message_recipient"
	contains(d.reason, "+15550100")
}

test_message_on_allowlist_allowed if {
	d := data.clawbutler.decision with input as message_input({"action": "send", "target": "+15550100", "message": "hi"}, ["+15550100"])
		with data.clawbutler.config as {"message_allowlist": ["+1555*"]}
	d.action == "allow"
}

test_message_one_recipient_off_the_list_held if {
	d := data.clawbutler.decision with input as message_input({"action": "send", "targets": ["@team", "@ceo"]}, ["@team", "@ceo"])
		with data.clawbutler.config as {"message_allowlist": ["@team"]}
	d.rule == "plugin.message_recipient"
	contains(d.reason, "@ceo")
	not contains(d.reason, "@team")
}

test_message_reply_in_place_allowed if allowed(message_input({"action": "send", "message": "done"}, []))

test_broadcast_held if held_by(message_input({"action": "broadcast", "message": "hi"}, []), "plugin.message_recipient")

test_message_grant_covers_the_recipient_not_the_text if {
	g := {"id": "g1", "agent": "main", "kind": "plugin", "pattern": "message", "arg_pattern": "+15550100", "expires_at": null}
	d := decide(with_grants(message_input({"action": "send", "target": "+15550100", "message": "another text"}, ["+15550100"]), [g]))
	d.action == "allow"
	d.rule == "grant:g1"
	other := decide(with_grants(message_input({"action": "send", "target": "+15550199", "message": "x"}, ["+15550199"]), [g]))
	other.action == "hold"
}

# A grant made from an approval holds the recipient masked, as the inbox showed it; the gate
# gives the call's arguments masked the same way.
test_message_grant_in_masked_form_matches_the_masked_arguments if {
	g := {"id": "g3", "agent": "main", "kind": "plugin", "pattern": "message", "arg_pattern": "\\[phone:16d7f1\\]", "expires_at": null}
	inp := message_input({"action": "send", "target": "+15550100", "message": "x"}, ["+15550100"])
	masked := object.union(inp, {"plugin": object.union(inp.plugin, {"grant_args_masked": "[phone:16d7f1]"})})
	decide(with_grants(masked, [g])).rule == "grant:g3"
	other := object.union(inp, {"plugin": object.union(inp.plugin, {"grant_args_masked": "[phone:0a0a0a]"})})
	decide(with_grants(other, [g])).action == "hold"
	decide(with_grants(inp, [g])).action == "hold"
}

# --- web

web_input(name, args, hosts) := plugin_input(name, args, {"family": name_family(name), "hosts": hosts, "grant_args": concat(" ", sort(hosts))})

name_family("browser") := "browser"

name_family("web_fetch") := "web"

test_web_fetch_off_allowlist_held if {
	d := decide(web_input("web_fetch", {"url": "https://evil.example/x"}, ["evil.example"]))
	d.action == "hold"
	d.rule == "plugin.web_domain"
	d.risk == "medium"
}

test_web_fetch_on_allowlist_allowed if {
	d := data.clawbutler.decision with input as web_input("web_fetch", {"url": "https://docs.rs/x"}, ["docs.rs"])
		with data.clawbutler.config as {"web_allowlist": ["docs.rs", "*.github.com"]}
	d.action == "allow"
}

test_browser_subdomain_glob if {
	d := data.clawbutler.decision with input as web_input("browser", {"action": "open", "targetUrl": "https://api.github.com"}, ["api.github.com"])
		with data.clawbutler.config as {"web_allowlist": ["*.github.com"]}
	d.action == "allow"
}

test_browser_without_url_allowed if allowed(web_input("browser", {"action": "snapshot"}, []))

test_browser_file_url_held if held_by(web_input("browser", {"action": "open", "targetUrl": "file:///etc/passwd"}, ["file:"]), "plugin.web_domain")

test_star_allows_every_host if {
	d := data.clawbutler.decision with input as web_input("web_fetch", {"url": "https://x.y"}, ["x.y"])
		with data.clawbutler.config as {"web_allowlist": ["*"]}
	d.action == "allow"
}

# --- spawn, exec, mcp, others

test_spawn_held if {
	d := decide(plugin_input("sessions_spawn", {"task": "research"}, {"family": "spawn", "grant_args": "default"}))
	d.action == "hold"
	d.rule == "plugin.spawn"
}

exec_tool(cmd, features) := object.union(
	plugin_input("exec", {"command": cmd}, {"family": "exec", "grant_args": cmd}),
	{"tool": {"server": null, "name": "exec", "args": {"command": cmd}, "features": features}},
)

test_exec_tool_uses_the_shell_rules if held_by(plugin_input("exec", {"command": "sudo systemctl restart nginx"}, {"family": "exec", "grant_args": "sudo systemctl restart nginx"}), "exec.privilege_escalation")

test_exec_tool_plain_command_allowed if allowed(plugin_input("exec", {"command": "ls -la"}, {"family": "exec", "grant_args": "ls -la"}))

test_exec_tool_workdir_outside_held if held_by(plugin_input("exec", {"command": "ls", "workdir": "/etc"}, {"family": "exec", "grant_args": "ls"}), "exec.outside_workspace")

test_exec_tool_with_engine_features if {
	# Features say sudo occurs: the rule re-checks the words.
	f := {
		"text": "sudo ls", "tokens": ["sudo", "ls"], "raw_tokens": ["sudo", "ls"], "words": {"sudo", "ls"},
		"program": "sudo", "flags": set(), "operators": set(), "redirects": set(), "paths": set(),
		"paths_in_workspace": true, "cwd_in_workspace": true, "triggers": {"privilege": {"sudo"}}, "hits": {},
	}
	held_by(exec_tool("sudo ls", f), "exec.privilege_escalation")
}

test_exec_grant_matches_the_command if {
	g := {"id": "g2", "agent": "main", "kind": "plugin", "pattern": "exec", "arg_pattern": "sudo systemctl * nginx", "expires_at": null}
	inp := plugin_input("exec", {"command": "sudo systemctl restart nginx"}, {"family": "exec", "grant_args": "sudo systemctl restart nginx"})
	decide(with_grants(inp, [g])).rule == "grant:g2"
	evil := plugin_input("exec", {"command": "sudo systemctl restart nginx; rm -rf /"}, {"family": "exec", "grant_args": "sudo systemctl restart nginx; rm -rf /"})
	decide(with_grants(evil, [g])).action == "hold"
}

mcp_input(server, tool, args) := object.union(
	plugin_input(concat("__", [server, tool]), args, {"family": "mcp"}),
	{"tool": {"server": server, "name": tool, "args": args}},
)

test_mcp_tool_decided_like_the_mcp_proxy if {
	d := decide(mcp_input("mail", "send_email", {"to": "cfo@example.com"}))
	d.action == "hold"
	d.rule == "tool.outbound_message"
	proxy := decide(tool_input("send_email", {"to": "cfo@example.com"}))
	proxy.rule == d.rule
	proxy.risk == d.risk
}

test_mcp_harmless_tool_allowed if allowed(mcp_input("docs", "search_docs", {"query": "rego"}))

test_mcp_via_clawbutler_passes if {
	d := decide(mcp_input("cb-main", "mail_send_email", {"to": "cfo@example.com"}))
	d.action == "allow"
	d.rule == "plugin.mcp_via_proxy"
}

test_mcp_proxy_servers_configurable if {
	d := data.clawbutler.decision with input as mcp_input("cb-main", "mail_send_email", {"to": "x@y.z"})
		with data.clawbutler.config as {"mcp_proxy_servers": []}
	d.rule == "tool.outbound_message"
}

test_tool_search_wrapper_passes if {
	d := decide(plugin_input("tool_call", {"id": "mail__send_email", "args": {"to": "x"}}, {"family": "tool_search"}))
	d.action == "allow"
	d.rule == "plugin.tool_search"
}

test_other_tools_allowed_low if {
	d := decide(plugin_input("sessions_list", {}, {}))
	d.action == "allow"
	d.rule == "allow.plugin"
	d.risk == "low"
}

test_configured_high_risk_builtin_held if {
	d := data.clawbutler.decision with input as plugin_input("cron", {"action": "add"}, {})
		with data.clawbutler.config as {"high_risk_tools": ["cron"]}
	d.rule == "tool.high_risk_configured"
}

test_plugin_message_not_held_by_the_name_rule if {
	d := data.clawbutler.decision with input as message_input({"action": "send", "target": "@team"}, ["@team"])
		with data.clawbutler.config as {"message_allowlist": ["@team"]}
	d.rule == "allow.plugin"
}

# The literal answer for an allowed plugin-gate call (decision.rego) is exactly what `_decide`
# answers; calls another gate decides keep their own rule.
test_allowed_plugin_call_literal_equals_the_general_chain if {
	i := plugin_input("read", {"path": "a.md"}, {"family": "file_read", "paths": [concat("/", [ws, "a.md"])]})
	d := data.clawbutler.decision with input as i
	d == data.clawbutler._decide with input as i
	d == {"action": "allow", "rule": "allow.plugin", "reason": "No policy rule restricts this tool call", "risk": "low", "obligations": {"mask": []}}
	m := mcp_input("cb-main", "search_docs", {"query": "rego"})
	p := data.clawbutler.decision with input as m
	p == data.clawbutler._decide with input as m
	p.rule == "plugin.mcp_via_proxy"
}

# A plugin-gate call without a command skips the command rules, but not the `workdir` rule.
test_plugin_workdir_without_command_still_held if held_by(plugin_input("process", {"workdir": "/etc"}, {"family": "other"}), "exec.outside_workspace")
