-- wrk script for scripts/pgo.sh's training: plugin-gate decisions (POST /v1/decide) as the
-- OpenClaw plugin sends them, with the plugin token scripts/pgo/train.py made (PGO_PLUGIN_TOKEN).
-- Each call has its own id: the gate answers a repeated id from its replay memory instead.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("PGO_PLUGIN_TOKEN")
local tools = {
  '"toolName":"read","params":{"path":"/srv/agents/main/notes.txt"}',
  '"toolName":"exec","params":{"command":"git status && cargo build 2>&1 | tail -5"}',
  '"toolName":"write","params":{"path":"/srv/agents/main/out.txt","content":"pgo"}',
}
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"version":1,"kind":"tool_call","agentId":"main",'
    .. '"sessionKey":"agent:main:main","sessionId":"s-1","runId":"run-%d","toolCallId":"c-%d-%d",%s,'
    .. '"requester":{"senderIsOwner":true},"workspace":"/srv/agents/main","run":{"trigger":"user"},'
    .. '"timeoutMs":599000}', math.floor(n / 100), id, n, tools[(n % #tools) + 1])
  return wrk.format(nil, nil, nil, body)
end
