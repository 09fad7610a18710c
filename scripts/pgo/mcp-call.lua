-- wrk script for scripts/pgo.sh's training: MCP tools/call through the sidecar's endpoint, on
-- the session scripts/pgo/train.py opened (PGO_MCP_TOKEN, PGO_MCP_SESSION). Each call has its
-- own JSON-RPC id, as a client's calls on one session do.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Mcp-Protocol-Version"] = "2025-11-25"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PGO_MCP_TOKEN")
wrk.headers["Mcp-Session-Id"] = os.getenv("PGO_MCP_SESSION")
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, string.format('{"jsonrpc":"2.0","id":"%d-%d","method":"tools/call",'
    .. '"params":{"name":"fast__echo","arguments":{"text":"hello"}}}', id, n))
end
