-- wrk script for scripts/pgo.sh and scripts/pgo/compare.sh: calls through the sidecar with the
-- credentials scripts/pgo/train.py's `tokens` exported, each with its own id (as a client's are;
-- the plugin gate answers a repeated `toolCallId` from its replay memory instead).
--   PGO_CALL=mcp     MCP tools/call on the opened session (PGO_MCP_TOKEN, PGO_MCP_SESSION)
--   PGO_CALL=decide  plugin-gate decisions, POST /v1/decide (PGO_PLUGIN_TOKEN)
local call = os.getenv("PGO_CALL")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local tools = {
  '"toolName":"read","params":{"path":"/srv/agents/main/notes.txt"}',
  '"toolName":"exec","params":{"command":"git status && cargo build 2>&1 | tail -5"}',
  '"toolName":"write","params":{"path":"/srv/agents/main/out.txt","content":"pgo"}',
}
if call == "mcp" then
  wrk.headers["Accept"] = "application/json, text/event-stream"
  wrk.headers["Mcp-Protocol-Version"] = "2025-11-25"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("PGO_MCP_TOKEN")
  wrk.headers["Mcp-Session-Id"] = os.getenv("PGO_MCP_SESSION")
elseif call == "decide" then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("PGO_PLUGIN_TOKEN")
else
  error("PGO_CALL must be mcp or decide")
end

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
request = function()
  n = n + 1
  local body
  if call == "mcp" then
    body = string.format('{"jsonrpc":"2.0","id":"%d-%d","method":"tools/call",'
      .. '"params":{"name":"fast__echo","arguments":{"text":"hello"}}}', id, n)
  else
    body = string.format('{"version":1,"kind":"tool_call","agentId":"main",'
      .. '"sessionKey":"agent:main:main","sessionId":"s-1","runId":"run-%d","toolCallId":"c-%d-%d",%s,'
      .. '"requester":{"senderIsOwner":true},"workspace":"/srv/agents/main","run":{"trigger":"user"},'
      .. '"timeoutMs":599000}', math.floor(n / 100), id, n, tools[(n % #tools) + 1])
  end
  return wrk.format(nil, nil, nil, body)
end
