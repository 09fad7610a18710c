# Input builders shared by the bundle's tests.
package clawbutler_test

now := "2026-06-01T12:00:00Z"

model_input(name) := {
	"version": 1, "kind": "model_call", "agent": "main", "trace_id": "t1", "now": now,
	"model": {"upstream": "openai", "upstream_kind": "openai", "endpoint": "chat_completions", "name": name, "max_tokens": 1000, "stream": true, "tools": []},
	"cost": {"estimate_usd": 0.01}, "budgets": [], "grants": [],
}

exec_input(cmd) := {
	"version": 1, "kind": "exec", "agent": "main", "trace_id": "t2", "now": now,
	"exec": {"command": cmd, "argv": [], "cwd": "/home/u/proj", "workspace": "/home/u/proj"},
	"cost": {}, "budgets": [], "grants": [],
}

tool_input(name, args) := {
	"version": 1, "kind": "tool_call", "agent": "main", "trace_id": "t3", "now": now,
	"tool": {"server": "srv", "name": name, "args": args},
	"cost": {}, "budgets": [], "grants": [],
}

with_grants(inp, grants) := object.union(inp, {"grants": grants})

decide(inp) := d if {
	d := data.clawbutler.decision with input as inp
}

held_by(inp, rule) if {
	d := decide(inp)
	d.action == "hold"
	d.rule == rule
}

allowed(inp) if decide(inp).action == "allow"
