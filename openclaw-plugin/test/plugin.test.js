// Unit tests for the ClawButler OpenClaw plugin: `node --test test/` (node >= 22, no dependencies).
// A fake `api` captures the hook handlers; a local HTTP server plays the sidecar.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import plugin, { resolveSettings, toolCallResult, agentRunResult, failClosedReason } from "../index.js";

const TOKEN = "t0ken";
const seen = [];
let behave = () => ({ status: 200, body: { action: "allow" } });
const server = http.createServer((req, res) => {
  let data = "";
  req.on("data", (c) => (data += c));
  req.on("end", async () => {
    const body = data ? JSON.parse(data) : undefined;
    seen.push({ url: req.url, auth: req.headers.authorization, body });
    const b = await behave(body, req);
    if (b.destroy) return req.socket.destroy();
    res.writeHead(b.status, { "content-type": "application/json" });
    res.end(typeof b.body === "string" ? b.body : b.body === undefined ? "" : JSON.stringify(b.body));
  });
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${server.address().port}`;
after(() => server.close());

function load(config = {}, hostHooks) {
  const handlers = {};
  const api = {
    pluginConfig: { decisionUrl: `${base}/v1/decide`, token: TOKEN, heartbeatSeconds: 0, ...config },
    config: { plugins: { entries: { clawbutler: { hooks: hostHooks } } } },
    registrationMode: "full",
    logger: { warn() {}, debug() {}, info() {} },
    on(name, fn, opts) {
      handlers[name] = { fn, opts };
    },
  };
  plugin.register(api);
  return handlers;
}
const toolEvent = { toolName: "write", params: { path: "/tmp/x", content: "hi" }, runId: "run1", toolCallId: "call1" };
const toolCtx = { agentId: "main", sessionKey: "agent:main:main", sessionId: "s1", runId: "run1", toolName: "write", toolCallId: "call1", requester: { senderIsOwner: true }, trace: { traceId: "a".repeat(32), spanId: "b".repeat(16) } };
const flush = () => new Promise((r) => setTimeout(r, 50));

test("timeouts: defaults stay under OpenClaw's 15 s hook timeout", () => {
  const s = resolveSettings({ decisionUrl: "http://x/v1/decide", token: "t" }, {});
  assert.equal(s.timeoutMs, 14000);
  assert.equal(s.toolHookTimeoutMs, 15000);
  assert.equal(s.agentRunTimeoutMs, 10000);
  assert.equal(s.runHookTimeoutMs, 11000);
  assert.equal(s.reportUrl, "http://x/v1/decide/report");
});

test("timeouts: own timeoutMs sets the registered hook timeout when the operator sets none", () => {
  const s = resolveSettings({ decisionUrl: "http://x", token: "t", timeoutMs: 300000 }, {});
  assert.equal(s.timeoutMs, 300000);
  assert.equal(s.toolHookTimeoutMs, 301000);
  const capped = resolveSettings({ decisionUrl: "http://x", token: "t", timeoutMs: 600000 }, {});
  assert.equal(capped.toolHookTimeoutMs, 600000);
});

test("timeouts: an operator hook timeout caps ours, minus a margin", () => {
  const host = { plugins: { entries: { clawbutler: { hooks: { timeouts: { before_tool_call: 60000 }, timeoutMs: 20000 } } } } };
  const s = resolveSettings({ decisionUrl: "http://x", token: "t", timeoutMs: 300000 }, host);
  assert.equal(s.timeoutMs, 59000);
  assert.equal(s.agentRunTimeoutMs, 10000); // hooks.timeoutMs 20000 applies to before_agent_run
  assert.equal(s.runHookTimeoutMs, 20000);
});

test("a file SecretRef OpenClaw left unresolved (a live install) is read from its private file", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cb-plugin-"));
  const file = path.join(dir, "openclaw-plugin.token");
  fs.writeFileSync(file, "cbp_secret\n", { mode: 0o600 });
  const host = { secrets: { providers: { clawbutler: { source: "file", path: file, mode: "singleValue" } } } };
  const ref = { source: "file", provider: "clawbutler", id: "value" };
  const s = resolveSettings({ decisionUrl: "http://x", token: ref }, host);
  assert.equal(s.problem, undefined);
  assert.equal(s.token, "cbp_secret");
  fs.chmodSync(file, 0o644);
  assert.match(resolveSettings({ decisionUrl: "http://x", token: ref }, host).problem, /readable or writable by others/);
  fs.rmSync(file);
  assert.match(resolveSettings({ decisionUrl: "http://x", token: ref }, host).problem, /could not be read \(ENOENT\)/);
  assert.match(resolveSettings({ decisionUrl: "http://x", token: ref }, {}).problem, /not a file provider/);
  fs.rmSync(dir, { recursive: true });
});

test("config problems are reported, not thrown", () => {
  assert.match(resolveSettings({ token: "t" }, {}).problem, /decisionUrl/);
  assert.match(resolveSettings({ decisionUrl: "http://x" }, {}).problem, /token is not available/);
  assert.match(resolveSettings({ decisionUrl: "http://x", token: "${CB_PLUGIN_TOKEN}" }, {}).problem, /CB_PLUGIN_TOKEN/);
});

test("answer mapping", () => {
  const s = resolveSettings({ decisionUrl: "http://x", token: "t" }, {});
  assert.equal(toolCallResult({ action: "allow" }, s), undefined);
  assert.deepEqual(toolCallResult({ action: "block", reason: "no (rule r1)" }, s), { block: true, blockReason: "no (rule r1)" });
  assert.deepEqual(toolCallResult({ action: "rewrite", params: { path: "/ok" } }, s), { params: { path: "/ok" } });
  assert.throws(() => toolCallResult({ action: "rewrite" }, s), /params/);
  assert.throws(() => toolCallResult({ action: "maybe" }, s), /unknown action/);
  const a = toolCallResult({ action: "approve", title: "T", description: "D", severity: "critical", timeoutMs: 900000, allowedDecisions: ["allow-once", "bogus", "deny"] }, s);
  assert.equal(a.requireApproval.title, "T");
  assert.equal(a.requireApproval.severity, "critical");
  assert.equal(a.requireApproval.timeoutMs, 600000);
  assert.deepEqual(a.requireApproval.allowedDecisions, ["allow-once", "deny"]);
});

test("agent_run block has exactly the shape OpenClaw's isHookDecision accepts", () => {
  assert.equal(agentRunResult({ action: "allow" }), undefined);
  const b = agentRunResult({ action: "block", reason: "agent_killed", message: "stopped", extra: 1 });
  assert.deepEqual(Object.keys(b).sort(), ["category", "message", "outcome", "reason"]);
  assert.equal(b.outcome, "block");
  assert.throws(() => agentRunResult({}), /unknown action/);
});

test("before_tool_call posts the request and maps allow/block/rewrite", async () => {
  const h = load();
  seen.length = 0;
  behave = () => ({ status: 200, body: { action: "allow" } });
  assert.equal(await h.before_tool_call.fn(toolEvent, toolCtx), undefined);
  const req = seen[0];
  assert.equal(req.url, "/v1/decide");
  assert.equal(req.auth, `Bearer ${TOKEN}`);
  assert.equal(req.body.kind, "tool_call");
  assert.equal(req.body.version, 1);
  assert.deepEqual(req.body.params, toolEvent.params);
  assert.equal(req.body.toolCallId, "call1");
  assert.equal(req.body.requester.senderIsOwner, true);
  assert.equal(req.body.timeoutMs, 14000, "the sidecar learns how long the plugin waits");
  behave = () => ({ status: 200, body: { action: "block", reason: "denied by rule files.outside_workspace" } });
  assert.deepEqual(await h.before_tool_call.fn(toolEvent, toolCtx), { block: true, blockReason: "denied by rule files.outside_workspace" });
  behave = () => ({ status: 200, body: { action: "rewrite", params: { path: "/safe" } } });
  assert.deepEqual(await h.before_tool_call.fn(toolEvent, toolCtx), { params: { path: "/safe" } });
});

test("before_tool_call fails closed with a clear reason", async () => {
  const h = load({ timeoutMs: 300 });
  const cases = [
    [() => ({ status: 500, body: { title: "boom" } }), /ClawButler refused the check \(HTTP 500: boom\)/],
    [() => ({ status: 401, body: { title: "unauthorized" } }), /HTTP 401/],
    [() => ({ status: 200, body: "<html>" }), /could not read \(answer is not JSON\)/],
    [() => ({ status: 200, body: [1] }), /not a JSON object/],
    [() => ({ status: 200, body: { action: "perhaps" } }), /unknown action/],
    [() => ({ status: 200, body: "" }), /empty answer/],
    [() => new Promise((r) => setTimeout(() => r({ status: 200, body: { action: "allow" } }), 800)), /did not answer in time \(no answer within 0.3 s\)/],
    [() => ({ destroy: true }), /could not be reached/],
  ];
  for (const [b, re] of cases) {
    behave = b;
    const r = await h.before_tool_call.fn(toolEvent, toolCtx);
    assert.equal(r.block, true);
    assert.match(r.blockReason, re);
    assert.match(r.blockReason, /fail closed/);
  }
});

test("before_tool_call: sidecar down (connection refused)", async () => {
  const h = load({ decisionUrl: "http://127.0.0.1:9/v1/decide" });
  const r = await h.before_tool_call.fn(toolEvent, toolCtx);
  assert.match(r.blockReason, /^ClawButler could not be reached \(ECONNREFUSED 127\.0\.0\.1:9\)/);
});

test("before_tool_call: the owning call's abort signal cancels a held request", async () => {
  const h = load({ timeoutMs: 5000 });
  behave = () => new Promise((r) => setTimeout(() => r({ status: 200, body: { action: "allow" } }), 2000));
  const ac = new AbortController();
  const t0 = Date.now();
  setTimeout(() => ac.abort(), 100);
  const r = await h.before_tool_call.fn(toolEvent, { ...toolCtx, abortSignal: ac.signal });
  assert.ok(Date.now() - t0 < 1500);
  assert.match(r.blockReason, /cancelled/);
});

test("before_agent_run: block, allow, and fail closed", async () => {
  const h = load({ agentRunTimeoutMs: 300 });
  const ctx = { agentId: "ops", sessionKey: "agent:ops:main", runId: "r9", trigger: "user", workspaceDir: "/w" };
  behave = () => ({ status: 200, body: { action: "block", reason: "agent_killed", message: "Agent ops is stopped." } });
  seen.length = 0;
  const b = await h.before_agent_run.fn({ prompt: "hi", messages: [] }, ctx);
  assert.deepEqual(b, { outcome: "block", reason: "agent_killed", message: "Agent ops is stopped.", category: "clawbutler" });
  assert.equal(seen[0].body.kind, "agent_run");
  assert.equal(seen[0].body.workspace, "/w");
  assert.equal(seen[0].body.prompt, undefined); // prompt text is not sent, only its length
  assert.equal(seen[0].body.promptChars, 2);
  behave = () => ({ status: 200, body: { action: "allow" } });
  assert.equal(await h.before_agent_run.fn({ prompt: "hi", messages: [] }, ctx), undefined);
  behave = () => ({ status: 503, body: {} });
  const f = await h.before_agent_run.fn({ prompt: "hi", messages: [] }, ctx);
  assert.equal(f.outcome, "block");
  assert.match(f.message, /ClawButler refused the check \(HTTP 503\), so this turn was not sent to the model/);
});

test("tool calls carry what before_agent_run learned about the run", async () => {
  const h = load();
  behave = () => ({ status: 200, body: { action: "allow" } });
  await h.before_agent_run.fn({ prompt: "x", messages: [] }, { agentId: "main", runId: "run1", trigger: "cron", channel: "webchat", workspaceDir: "/ws" });
  seen.length = 0;
  await h.before_tool_call.fn(toolEvent, toolCtx);
  assert.deepEqual(seen[0].body.run, { trigger: "cron", channel: "webchat" });
  assert.equal(seen[0].body.workspace, "/ws");
});

test("reports are fire-and-forget and never throw", async () => {
  const h = load({ maxReportBytes: 1024 });
  seen.length = 0;
  behave = () => ({ status: 204 });
  const big = "x".repeat(5000);
  assert.equal(h.after_tool_call.fn({ ...toolEvent, result: { content: [{ type: "text", text: big }] }, durationMs: 12 }, toolCtx), undefined);
  assert.equal(h.llm_output.fn({ runId: "run1", sessionId: "s1", provider: "p", model: "m", assistantTexts: ["a"], usage: { input: 1, output: 2, cost: { total: 0.5 } } }, toolCtx), undefined);
  await flush();
  const tr = seen.find((s) => s.body.kind === "tool_result");
  assert.equal(tr.url, "/v1/decide/report");
  assert.equal(tr.body.durationMs, 12);
  assert.equal(tr.body.result.truncated, true);
  const lo = seen.find((s) => s.body.kind === "llm_output");
  assert.equal(lo.body.usage.cost.total, 0.5);
  // sidecar down: still no throw
  const down = load({ decisionUrl: "http://127.0.0.1:9/v1/decide" });
  assert.equal(down.after_tool_call.fn(toolEvent, toolCtx), undefined);
  await flush();
});

test("failClosedReason wording", () => {
  assert.equal(failClosedReason(new Error("x"), "the write call was blocked"), "ClawButler could not be reached (x), so the write call was blocked (fail closed). Ask an operator to check the ClawButler sidecar.");
});
