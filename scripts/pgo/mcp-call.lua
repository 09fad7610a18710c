-- wrk script for scripts/pgo.sh's training: MCP tools/call through the sidecar's endpoint, on
-- the session scripts/pgo/train.py opened (PGO_MCP_TOKEN, PGO_MCP_SESSION).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Protocol-Version"] = "2025-11-25"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PGO_MCP_TOKEN")
wrk.headers["Mcp-Session-Id"] = os.getenv("PGO_MCP_SESSION")
wrk.body = '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"fast__echo","arguments":{"text":"hello"}}}'
