#!/usr/bin/env python3
"""The training run of scripts/pgo.sh, on 127.0.0.1 (standard library only).

  train.py mcp-server PORT      a fast MCP server (streamable HTTP, fixed JSON answers)
  train.py tokens ADMIN_TOKEN    an MCP session and a plugin token for the wrk phases, as
                                 `export PGO_MCP_TOKEN=... PGO_MCP_SESSION=... PGO_PLUGIN_TOKEN=...`
  train.py train ADMIN_TOKEN     every call kind through the instrumented sidecar

`train` runs each path an operator's sidecar runs, so none is laid out as cold code: model calls
(OpenAI and Anthropic, streamed and not) against the scripted upstream, refusals, MCP sessions
and tool calls (masked results among them), plugin-gate decisions (allowed, held and approved or
denied through the control API, refused), and control API reads. Ports: 18091 (data), 18092
(control), 18093 (the MCP server). It fails loudly when a path answers other than expected, so a
profile is never trained on error pages alone.
"""
import json
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATA, CONTROL = "http://127.0.0.1:18091", "http://127.0.0.1:18092"


class Mcp(BaseHTTPRequestHandler):
    """initialize, tools/list and tools/call with fixed answers (benches/mcp_load.rs's server)."""

    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def do_GET(self):  # no server-initiated stream (the spec's answer)
        self.send_response(405)
        self.send_header("content-length", "0")
        self.end_headers()

    do_DELETE = do_GET

    def do_POST(self):
        msg = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        method = msg.get("method", "")
        if method == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                      "serverInfo": {"name": "fast", "version": "1"}}
        elif method == "tools/list":
            schema = {"type": "object", "properties": {"text": {"type": "string"}}}
            result = {"tools": [{"name": "echo", "description": "echo", "inputSchema": schema},
                                {"name": "read_file", "description": "read", "inputSchema": schema}]}
        elif method == "tools/call":
            text = json.dumps(msg.get("params", {}).get("arguments", {}))
            result = {"content": [{"type": "text", "text": f"echo: {text}"}]}
        else:
            result = {}
        self.send_response(202 if "id" not in msg else 200)
        self.send_header("mcp-session-id", "fast-1")
        if "id" not in msg:
            self.send_header("content-length", "0")
            self.end_headers()
            return
        body = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def call(url, body=None, headers=None, timeout=30):
    """(status, body bytes, headers) of one request; HTTP errors are answers too."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    h = {"content-type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def expect(what, got, want):
    if got not in want:
        sys.exit(f"pgo: {what}: got {got}, expected one of {want}")


def models(admin):
    chat = lambda s: {"model": "gpt-4o-mini", "stream": s, "max_tokens": 64,
                      "messages": [{"role": "user", "content": "hello"}]}
    msg = lambda s: {"model": "claude-haiku-4-5", "stream": s, "max_tokens": 64,
                     "messages": [{"role": "user", "content": "hello"}]}
    auth = {"authorization": f"Bearer {admin}"}
    for i in range(300):
        expect("chat", call(f"{DATA}/a/main/fake/v1/chat/completions", chat(i % 2 == 0))[0], {200})
        expect("messages", call(f"{DATA}/a/main/anth/v1/messages", msg(i % 2 == 0),
                                {"anthropic-version": "2023-06-01"})[0], {200})
        if i % 10 == 0:
            expect("unknown upstream", call(f"{DATA}/a/main/nosuch/v1/chat/completions", chat(False))[0],
                   {404})
            expect("bad body", call(f"{DATA}/a/main/fake/v1/chat/completions", b"{not json")[0], {400})
            for path in ("/api/v1/audit?limit=50", "/metrics", "/api/v1/budgets",
                         "/api/v1/approvals?status=pending"):
                expect(path, call(f"{CONTROL}{path}", None, auth)[0], {200})
    print("pgo: 600 model calls, 60 refusals, 120 control API reads")


def mcp_session(admin):
    """A new MCP token of agent `main` and a session opened with it: (url, headers)."""
    auth = {"authorization": f"Bearer {admin}"}
    status, body, _ = call(f"{CONTROL}/api/v1/agents/main/mcp-tokens", {}, auth)
    expect("MCP token", status, {200, 201})
    h = {"authorization": f"Bearer {json.loads(body)['token']}",
         "accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    url = f"{DATA}/mcp/agent/main"
    status, _, headers = call(url, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "pgo", "version": "1"}}}, h)
    expect("MCP initialize", status, {200})
    h["mcp-session-id"] = headers["mcp-session-id"]
    call(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, h)
    return url, h


def plugin_token(admin):
    auth = {"authorization": f"Bearer {admin}"}
    status, body, _ = call(f"{CONTROL}/api/v1/plugin-tokens",
                           {"gateway": "ws://pgo:18789", "label": "pgo"}, auth)
    expect("plugin token", status, {201})
    return json.loads(body)["token"]


def mcp(admin):
    url, h = mcp_session(admin)
    expect("tools/list", call(url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, h)[0], {200})
    args = [{"text": "hello"}, {"text": "token sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"},
            {"path": "/srv/agents/main/notes.txt"}, {"command": "ls -la"}]
    for i in range(600):
        name = "fast__echo" if i % 4 != 2 else "fast__read_file"
        msg = {"jsonrpc": "2.0", "id": i + 2, "method": "tools/call",
               "params": {"name": name, "arguments": args[i % len(args)]}}
        status, body, _ = call(url, msg, h)
        expect("tools/call", status, {200})
        if b'"echo: ' not in body:
            sys.exit(f"pgo: tools/call {msg['params']} answered {body[:300]!r}")
    expect("unknown tool", call(url, {"jsonrpc": "2.0", "id": 9999, "method": "tools/call",
                                      "params": {"name": "nosuch__tool", "arguments": {}}}, h)[0], {200})
    print("pgo: an MCP session, 600 tool calls")


def plugin_request(i, tool, params):
    return {"version": 1, "kind": "tool_call", "agentId": "main", "sessionKey": "agent:main:main",
            "sessionId": "s-1", "runId": f"run-{i // 100}", "toolCallId": f"call-{i}",
            "toolName": tool, "params": params, "requester": {"senderIsOwner": True},
            "workspace": "/srv/agents/main", "run": {"trigger": "user"}, "timeoutMs": 599000}


def approver(admin, n, done, decided):
    """Decides the next `n` holds as they appear, allowing and denying in turn; counts them in
    `decided[0]`."""
    auth = {"authorization": f"Bearer {admin}"}
    while decided[0] < n and not done.is_set():
        _, body, _ = call(f"{CONTROL}/api/v1/approvals?status=pending&agent=main", None, auth)
        for a in json.loads(body).get("items", []):
            decision = "allow-once" if decided[0] % 2 == 0 else "deny"
            status = call(f"{CONTROL}/api/v1/approvals/{a['id']}/decision",
                          {"decision": decision, "expected_version": a["version"], "reason": "pgo"},
                          auth)[0]
            decided[0] += status == 200
        time.sleep(0.05)


def plugin(admin):
    h = {"authorization": f"Bearer {plugin_token(admin)}"}
    usual = [("read", {"path": "/srv/agents/main/notes.txt"}),
             ("write", {"path": "/srv/agents/main/out.txt", "content": "pgo"}),
             ("edit", {"path": "/srv/agents/main/out.txt", "oldText": "a", "newText": "b"}),
             ("exec", {"command": "ls -la", "workdir": "/srv/agents/main"}),
             ("exec", {"command": "git status && cargo build 2>&1 | tail -5"}),
             ("fast__echo", {"text": "hello"}),
             ("memory_search", {"query": "deploy notes"})]
    held = [("write", {"path": "/etc/pgo.conf", "content": "x"}),
            ("web_fetch", {"url": "https://example.org/"}),
            ("message", {"action": "send", "to": "+15550100", "message": "hi"}),
            ("sessions_spawn", {"task": "pgo"})]
    actions = {}
    for i in range(600):
        tool, params = usual[i % len(usual)]
        try:
            status, body, _ = call(f"{DATA}/v1/decide", plugin_request(i, tool, params), h, timeout=5)
        except TimeoutError:
            sys.exit(f"pgo: {tool} {params} was held")
        expect("decide", status, {200})
        a = json.loads(body).get("action", "?")
        actions[a] = actions.get(a, 0) + 1
    expect("decide without a token", call(f"{DATA}/v1/decide", plugin_request(0, "read", {}))[0], {401})
    # Holds (a write outside the workspace, a host off the web allow-list, a message, a new
    # session) wait for a human; the approver thread answers them.
    holds = 20
    done, decided = threading.Event(), [0]
    t = threading.Thread(target=approver, args=(admin, holds, done, decided))
    t.start()
    for i in range(holds):
        req = plugin_request(10_000 + i, *held[i % len(held)])
        status, body, _ = call(f"{DATA}/v1/decide", req, h)
        expect("held decide", status, {200})
        a = json.loads(body).get("action", "?")
        actions[a] = actions.get(a, 0) + 1
    done.set()
    t.join()
    # Each of them must have waited for the approver: a hold answered at once trains nothing.
    expect("holds decided by the approver", decided[0], {holds})
    print(f"pgo: {600 + holds} plugin-gate decisions {dict(sorted(actions.items()))}")


def main():
    if sys.argv[1] == "mcp-server":
        ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Mcp).serve_forever()
    admin = sys.argv[2]
    if sys.argv[1] == "tokens":
        _, h = mcp_session(admin)
        print(f"export PGO_MCP_TOKEN={h['authorization'][7:]} PGO_MCP_SESSION={h['mcp-session-id']}"
              f" PGO_PLUGIN_TOKEN={plugin_token(admin)}")
        return
    models(admin)
    mcp(admin)
    plugin(admin)


if __name__ == "__main__":
    main()
