// ClawButler plugin for OpenClaw (>= 2026.9.6).
//
// Its only job is to ask the ClawButler sidecar; every policy decision is made there.
//   before_tool_call  -> POST <decisionUrl> {kind:"tool_call", ...}  -> allow | block | rewrite | approve
//   before_agent_run  -> POST <decisionUrl> {kind:"agent_run", ...}  -> allow | block (killed, over budget)
//   after_tool_call, model_call_ended, llm_output, heartbeat -> POST <reportUrl> (fire and forget)
// Anything other than a well-formed answer in time (sidecar down, non-2xx, timeout, garbage) blocks the
// tool call or the turn with a reason that says ClawButler could not be reached (fail closed).
//
// Plain ES module, no dependencies: node:http / node:https only. (Global fetch is undici, whose default
// 300 s headers timeout would cut a long-poll hold short of OpenClaw's 600 s hook ceiling.)

import fs from "node:fs";
import http from "node:http";
import https from "node:https";

const PLUGIN_ID = "clawbutler";
const PLUGIN_VERSION = "0.1.0";
const PROTOCOL_VERSION = 1;
const USER_AGENT = `clawbutler-openclaw-plugin/${PLUGIN_VERSION}`;
const OPENCLAW_DEFAULT_GATE_TIMEOUT_MS = 15000; // before_tool_call / before_agent_run default in OpenClaw
const GATE_MARGIN_MS = 1000; // answer before OpenClaw's own hook timeout so our reason reaches the model
const MAX_HOOK_TIMEOUT_MS = 600000; // OpenClaw caps operator hook timeouts here
const MAX_REPORTS_IN_FLIGHT = 64;
const MAX_RUNS_REMEMBERED = 512;
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
const HEARTBEAT_KEY = Symbol.for("clawbutler.openclaw-plugin.heartbeat");
const ACTIONS = new Set(["allow", "block", "rewrite", "approve"]);
const SEVERITIES = new Set(["info", "warning", "critical"]);
const APPROVAL_DECISIONS = new Set(["allow-once", "allow-always", "deny"]);

// No socket cap: a held decision (long poll) occupies its socket, and other decisions must not queue behind it.
const agents = {
  "http:": new http.Agent({ keepAlive: true }),
  "https:": new https.Agent({ keepAlive: true }),
};

/** Thrown by postJson; `kind` is one of config|unreachable|timeout|aborted|status|garbage. */
class SidecarError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const isPlainObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const nonEmpty = (v) => (typeof v === "string" && v.trim() ? v.trim() : undefined);
const posInt = (v) => (Number.isInteger(v) && v > 0 ? v : undefined);

/** Drop undefined values so the JSON body only carries what OpenClaw provided. */
function compact(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * POST a JSON body and parse a JSON answer. Resolves `{status, body}` only for 2xx with a JSON object
 * (or an empty 204 when `allowEmpty`); everything else throws a SidecarError. One retry, only when a reused
 * keep-alive socket turned out to be closed by the server before any answer (the race Node documents for
 * `req.reusedSocket`); a sidecar should still treat (runId, toolCallId) as the idempotency key.
 */
export function postJson(urlString, { token, body, timeoutMs, signal, allowEmpty = false }) {
  return new Promise((resolve, reject) => {
    let url;
    try {
      url = new URL(urlString);
    } catch {
      reject(new SidecarError("config", `decision URL ${JSON.stringify(urlString)} is not a URL`));
      return;
    }
    const lib = url.protocol === "https:" ? https : url.protocol === "http:" ? http : null;
    if (!lib) {
      reject(new SidecarError("config", `decision URL scheme ${url.protocol} is not http or https`));
      return;
    }
    if (signal?.aborted) {
      reject(new SidecarError("aborted", "the tool call was cancelled"));
      return;
    }
    const payload = Buffer.from(JSON.stringify(body));
    let settled = false;
    let req;
    const finish = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      fn(value);
    };
    const timer = setTimeout(() => {
      finish(reject, new SidecarError("timeout", `no answer within ${formatMs(timeoutMs)}`));
      req?.destroy();
    }, timeoutMs);
    const onAbort = () => {
      finish(reject, new SidecarError("aborted", "the tool call was cancelled"));
      req?.destroy();
    };
    signal?.addEventListener("abort", onAbort, { once: true });

    const attempt = (isRetry) => {
      let answered = false;
      req = lib.request(url, {
        method: "POST",
        agent: agents[url.protocol],
        headers: {
          "content-type": "application/json",
          "content-length": payload.length,
          accept: "application/json",
          authorization: `Bearer ${token}`,
          "user-agent": USER_AGENT,
          "x-clawbutler-plugin": PLUGIN_VERSION,
        },
      });
      const thisReq = req;
      thisReq.on("error", (err) => {
        if (settled) return;
        const code = err?.code ?? "";
        if (!isRetry && !answered && thisReq.reusedSocket && (code === "ECONNRESET" || code === "EPIPE")) {
          attempt(true);
          return;
        }
        finish(reject, new SidecarError("unreachable", `${code || err?.message || String(err)} ${url.host}`));
      });
      thisReq.on("response", (res) => {
        answered = true;
        const chunks = [];
        let size = 0;
        res.on("data", (c) => {
          size += c.length;
          if (size > MAX_ANSWER_BYTES) {
            finish(reject, new SidecarError("garbage", "answer too large"));
            thisReq.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on("error", (err) => finish(reject, new SidecarError("unreachable", err?.code || String(err))));
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString("utf8");
          if (status < 200 || status > 299) {
            finish(reject, new SidecarError("status", `HTTP ${status}${summarizeErrorBody(text)}`));
            return;
          }
          if (!text.trim()) {
            if (allowEmpty) finish(resolve, { status, body: undefined });
            else finish(reject, new SidecarError("garbage", `empty answer (HTTP ${status})`));
            return;
          }
          let parsed;
          try {
            parsed = JSON.parse(text);
          } catch {
            finish(reject, new SidecarError("garbage", "answer is not JSON"));
            return;
          }
          if (!isPlainObject(parsed)) {
            finish(reject, new SidecarError("garbage", "answer is not a JSON object"));
            return;
          }
          finish(resolve, { status, body: parsed });
        });
      });
      thisReq.end(payload);
    };
    attempt(false);
  });
}

function summarizeErrorBody(text) {
  if (!text) return "";
  try {
    const j = JSON.parse(text);
    const msg = nonEmpty(j?.detail) ?? nonEmpty(j?.title) ?? nonEmpty(j?.error?.message) ?? nonEmpty(j?.message);
    return msg ? `: ${msg.slice(0, 200)}` : "";
  } catch {
    return "";
  }
}

function formatMs(ms) {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** The sentence the model (tool call) or the user (turn) sees when the sidecar gave no usable answer. */
export function failClosedReason(err, what) {
  const why = err instanceof SidecarError ? err.message : String(err?.message ?? err);
  const kind = err instanceof SidecarError ? err.kind : "unreachable";
  const lead =
    kind === "config"
      ? "ClawButler is not configured correctly in OpenClaw"
      : kind === "aborted"
        ? "The ClawButler check was cancelled"
        : kind === "status"
          ? "ClawButler refused the check"
          : kind === "garbage"
            ? "ClawButler sent an answer the plugin could not read"
            : kind === "timeout"
              ? "ClawButler did not answer in time"
              : "ClawButler could not be reached";
  return `${lead} (${why}), so ${what} (fail closed). Ask an operator to check the ClawButler sidecar.`;
}

function hookTimeoutFromConfig(cfg, hookName) {
  const hooks = cfg?.plugins?.entries?.[PLUGIN_ID]?.hooks;
  return posInt(hooks?.timeouts?.[hookName]) ?? posInt(hooks?.timeoutMs);
}

/**
 * The token when OpenClaw handed over its file SecretRef unresolved. OpenClaw resolves SecretRefs in plugin
 * config when the gateway starts; a plugin added by a live config.patch (what `clawbutler attach` does) is
 * registered with the raw ref `{source:"file", provider, id:"value"}`, and neither secrets.reload nor
 * plugins.reload resolves it (seen on 2026.9.6). So the plugin reads the file itself, with OpenClaw's own
 * rules for it: a `singleValue` file provider, a regular file owned by this user and private (no group or
 * other bits), one trailing newline dropped. Returns `{token}` or `{problem}`.
 */
export function readFileSecretRef(ref, hostConfig, fsImpl = fs) {
  if (!isPlainObject(ref) || ref.source !== "file" || typeof ref.provider !== "string") return {};
  const provider = hostConfig?.secrets?.providers?.[ref.provider];
  if (!isPlainObject(provider) || provider.source !== "file" || typeof provider.path !== "string")
    return { problem: `secrets provider "${ref.provider}" is not a file provider` };
  if (provider.mode !== "singleValue" || (ref.id ?? "value") !== "value")
    return { problem: `secrets provider "${ref.provider}" is not a singleValue file provider` };
  try {
    const st = fsImpl.statSync(provider.path);
    if (!st.isFile()) return { problem: `${provider.path} is not a regular file` };
    if ((st.mode & 0o077) !== 0) return { problem: `${provider.path} is readable or writable by others (chmod 600 it)` };
    if (typeof process.getuid === "function" && st.uid !== process.getuid())
      return { problem: `${provider.path} is not owned by the gateway's user` };
    const token = fsImpl.readFileSync(provider.path, "utf8").replace(/^\uFEFF/, "").replace(/\r?\n$/, "").trim();
    return token ? { token } : { problem: `${provider.path} is empty` };
  } catch (e) {
    return { problem: `${provider.path} could not be read (${e?.code ?? e?.message ?? e})` };
  }
}

/** Validated settings with defaults; `problem` is set when the plugin cannot work at all. */
export function resolveSettings(pluginConfig, hostConfig) {
  const c = isPlainObject(pluginConfig) ? pluginConfig : {};
  const decisionUrl = nonEmpty(c.decisionUrl);
  const fileRef = typeof c.token === "string" ? {} : readFileSecretRef(c.token, hostConfig);
  const token = typeof c.token === "string" ? c.token.trim() : fileRef.token;
  let problem;
  if (!decisionUrl) problem = "plugins.entries.clawbutler.config.decisionUrl is not set";
  else if (!token && fileRef.problem) problem = `the plugin token is not available (${fileRef.problem})`;
  else if (!token)
    problem =
      "the plugin token is not available (plugins.entries.clawbutler.config.token is unset, or its env reference / SecretRef could not be resolved)";
  else if (/^\$\{[A-Z_][A-Z0-9_]*\}$/.test(token)) problem = `the plugin token env reference ${token} is not set in the gateway's environment`;
  const reportUrl = nonEmpty(c.reportUrl) ?? (decisionUrl ? `${decisionUrl.replace(/\/+$/, "")}/report` : undefined);

  // OpenClaw's hook timeout is operator hooks.timeouts.<hook> ?? hooks.timeoutMs ?? the timeout this plugin
  // registers with. Our own limit must expire first so the block carries our reason, not OpenClaw's generic
  // "before_tool_call hook failed". Without an operator value we register <our limit> + 1 s.
  // A tool-call decision may be a hold, so by default it may use the whole operator budget; a turn check
  // should be quick, so it defaults to 10 s within that budget.
  const gate = (hookName, own, fallback, fillOperatorBudget) => {
    const operator = hookTimeoutFromConfig(hostConfig, hookName);
    if (operator) {
      const ceiling = Math.max(100, operator - GATE_MARGIN_MS);
      return { limit: Math.min(own ?? (fillOperatorBudget ? ceiling : fallback), ceiling), hook: operator };
    }
    const limit = Math.min(own ?? fallback, MAX_HOOK_TIMEOUT_MS - GATE_MARGIN_MS);
    return { limit, hook: limit + GATE_MARGIN_MS };
  };
  const tool = gate("before_tool_call", posInt(c.timeoutMs), OPENCLAW_DEFAULT_GATE_TIMEOUT_MS - GATE_MARGIN_MS, true);
  const turn = gate("before_agent_run", posInt(c.agentRunTimeoutMs), 10000, false);
  return {
    decisionUrl,
    reportUrl,
    token,
    problem,
    timeoutMs: tool.limit,
    agentRunTimeoutMs: turn.limit,
    // Registered as the plugin-authored hook timeout; operator hooks.timeouts.* / hooks.timeoutMs win.
    toolHookTimeoutMs: tool.hook,
    runHookTimeoutMs: turn.hook,
    reportTimeoutMs: posInt(c.reportTimeoutMs) ?? 5000,
    reports: c.reports !== false,
    maxReportBytes: posInt(c.maxReportBytes) ?? 65536,
    heartbeatSeconds: Number.isInteger(c.heartbeatSeconds) && c.heartbeatSeconds >= 0 ? c.heartbeatSeconds : 60,
    approvalTimeoutMs: posInt(c.approvalTimeoutMs) ?? 600000,
  };
}

/** A value as JSON, or a marker with a prefix when it is larger than `max` bytes. */
function boundedJson(value, max) {
  if (value === undefined) return undefined;
  let text;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    return { unserializable: true, error: String(err?.message ?? err).slice(0, 200) };
  }
  if (text === undefined) return undefined;
  if (Buffer.byteLength(text) <= max) return value;
  return { truncated: true, bytes: Buffer.byteLength(text), prefix: text.slice(0, Math.max(0, max - 256)) };
}

function plainTrace(trace) {
  if (!isPlainObject(trace)) return undefined;
  return compact({ traceId: trace.traceId, spanId: trace.spanId, parentSpanId: trace.parentSpanId });
}

function plainRequester(r) {
  if (!isPlainObject(r)) return undefined;
  return compact({
    channel: r.channel,
    accountId: r.accountId,
    senderId: r.senderId,
    senderIsOwner: r.senderIsOwner,
    roleIds: Array.isArray(r.roleIds) ? [...r.roleIds] : undefined,
  });
}

/** Map a parsed sidecar answer to a before_tool_call result; throws SidecarError("garbage") if malformed. */
export function toolCallResult(answer, settings, { onResolution } = {}) {
  const action = answer?.action;
  if (!ACTIONS.has(action)) throw new SidecarError("garbage", `unknown action ${JSON.stringify(action)}`);
  const reason = nonEmpty(answer.reason);
  if (action === "allow") return undefined;
  if (action === "block") {
    return { block: true, blockReason: reason ?? "Blocked by ClawButler policy." };
  }
  if (action === "rewrite") {
    if (!isPlainObject(answer.params)) throw new SidecarError("garbage", "rewrite without a params object");
    return { params: answer.params };
  }
  // approve: OpenClaw's native plugin approval (approvers in the Control UI, TUI, chat /approve, or the
  // sidecar itself over the gateway link).
  const severity = SEVERITIES.has(answer.severity) ? answer.severity : "warning";
  const allowed = Array.isArray(answer.allowedDecisions)
    ? answer.allowedDecisions.filter((d) => APPROVAL_DECISIONS.has(d))
    : [];
  const timeoutMs = Math.min(posInt(answer.timeoutMs) ?? settings.approvalTimeoutMs, 600000);
  return {
    ...(isPlainObject(answer.params) ? { params: answer.params } : {}),
    requireApproval: compact({
      title: (nonEmpty(answer.title) ?? "ClawButler approval").slice(0, 200),
      description: (nonEmpty(answer.description) ?? reason ?? "ClawButler policy asks a human to approve this tool call.").slice(0, 2000),
      severity,
      timeoutMs,
      timeoutReason: nonEmpty(answer.timeoutReason) ?? "ClawButler approval timed out; the tool call did not run.",
      allowedDecisions: allowed.length ? allowed : undefined,
      onResolution,
    }),
  };
}

/** Map a parsed sidecar answer to a before_agent_run result; throws SidecarError("garbage") if malformed. */
export function agentRunResult(answer) {
  const action = answer?.action;
  if (action === "allow") return undefined;
  if (action !== "block") throw new SidecarError("garbage", `unknown action ${JSON.stringify(action)}`);
  const message = nonEmpty(answer.message) ?? nonEmpty(answer.reason) ?? "ClawButler stopped this turn.";
  return {
    outcome: "block",
    reason: nonEmpty(answer.reason) ?? "clawbutler",
    message,
    category: nonEmpty(answer.category) ?? "clawbutler",
  };
}

/** Small LRU of what before_agent_run knew about a run (tool hooks do not get trigger or workspace). */
class RunMemory {
  constructor(max) {
    this.max = max;
    this.map = new Map();
  }
  set(runId, info) {
    if (!runId) return;
    this.map.delete(runId);
    this.map.set(runId, info);
    while (this.map.size > this.max) this.map.delete(this.map.keys().next().value);
  }
  get(runId) {
    return runId ? this.map.get(runId) : undefined;
  }
}

export function createPlugin() {
  return {
    id: PLUGIN_ID,
    name: "ClawButler",
    description: "Asks the ClawButler sidecar before every tool call and agent turn.",
    version: PLUGIN_VERSION,
    register(api) {
      const settings = resolveSettings(api.pluginConfig, api.config);
      const log = api.logger ?? console;
      const runs = new RunMemory(MAX_RUNS_REMEMBERED);
      let reportsInFlight = 0;
      let reportsDropped = 0;
      if (settings.problem) log.warn?.(`[clawbutler] ${settings.problem}; every tool call and turn will be blocked`);

      const workspaceOf = (agentId) => {
        if (!agentId) return undefined;
        try {
          const cfg = api.runtime?.config?.current?.() ?? api.config;
          return api.runtime?.agent?.resolveAgentWorkspaceDir?.(cfg, agentId);
        } catch {
          return undefined;
        }
      };

      const decide = async (body, timeoutMs, signal) => {
        if (settings.problem) throw new SidecarError("config", settings.problem);
        const { body: answer } = await postJson(settings.decisionUrl, {
          token: settings.token,
          body: { version: PROTOCOL_VERSION, ...body },
          timeoutMs,
          signal,
        });
        return answer;
      };

      const report = (body) => {
        if (!settings.reports || settings.problem) return;
        if (reportsInFlight >= MAX_REPORTS_IN_FLIGHT) {
          reportsDropped += 1;
          return;
        }
        reportsInFlight += 1;
        const dropped = reportsDropped;
        reportsDropped = 0;
        postJson(settings.reportUrl, {
          token: settings.token,
          body: compact({ version: PROTOCOL_VERSION, ...body, droppedBefore: dropped || undefined }),
          timeoutMs: settings.reportTimeoutMs,
          allowEmpty: true,
        })
          .catch((err) => log.debug?.(`[clawbutler] report ${body.kind} failed: ${err?.message ?? err}`))
          .finally(() => {
            reportsInFlight -= 1;
          });
      };

      // ---- tool calls: the gate -------------------------------------------------------------------------
      api.on(
        "before_tool_call",
        async (event, ctx) => {
          const runId = ctx?.runId ?? event?.runId;
          const run = runs.get(runId);
          const body = compact({
            kind: "tool_call",
            agentId: ctx?.agentId,
            sessionKey: ctx?.sessionKey,
            sessionId: ctx?.sessionId,
            runId,
            toolCallId: ctx?.toolCallId ?? event?.toolCallId,
            toolName: event?.toolName ?? ctx?.toolName,
            toolKind: event?.toolKind ?? ctx?.toolKind,
            toolInputKind: event?.toolInputKind ?? ctx?.toolInputKind,
            params: event?.params ?? {},
            derivedPaths: Array.isArray(event?.derivedPaths) ? [...event.derivedPaths] : undefined,
            requester: plainRequester(ctx?.requester),
            channelId: ctx?.channelId,
            trace: plainTrace(ctx?.trace),
            workspace: run?.workspace ?? workspaceOf(ctx?.agentId),
            run: run ? compact({ trigger: run.trigger, channel: run.channel, messageProvider: run.messageProvider }) : undefined,
            // How long this hook waits for the answer: the sidecar answers a hold before it.
            timeoutMs: settings.timeoutMs,
          });
          try {
            const answer = await decide(body, settings.timeoutMs, ctx?.abortSignal);
            const decisionId = nonEmpty(answer.decisionId) ?? nonEmpty(answer.id);
            return toolCallResult(answer, settings, {
              onResolution: (resolution) =>
                report(
                  compact({
                    kind: "approval_resolution",
                    decisionId,
                    agentId: body.agentId,
                    sessionKey: body.sessionKey,
                    runId: body.runId,
                    toolCallId: body.toolCallId,
                    toolName: body.toolName,
                    resolution,
                  }),
                ),
            });
          } catch (err) {
            const reason = failClosedReason(err, `the ${body.toolName ?? "tool"} call was blocked`);
            log.warn?.(`[clawbutler] before_tool_call ${body.toolName} blocked: ${reason}`);
            return { block: true, blockReason: reason };
          }
        },
        { timeoutMs: settings.toolHookTimeoutMs },
      );

      // ---- turns: kill switch and budget ------------------------------------------------------------------
      api.on(
        "before_agent_run",
        async (event, ctx) => {
          const workspace = ctx?.workspaceDir ?? workspaceOf(ctx?.agentId);
          runs.set(ctx?.runId, {
            agentId: ctx?.agentId,
            trigger: ctx?.trigger,
            channel: ctx?.channel,
            messageProvider: ctx?.messageProvider,
            workspace,
          });
          const body = compact({
            kind: "agent_run",
            agentId: ctx?.agentId,
            sessionKey: ctx?.sessionKey,
            sessionId: ctx?.sessionId,
            runId: ctx?.runId,
            trigger: ctx?.trigger,
            channel: ctx?.channel,
            channelId: ctx?.channelId ?? event?.channelId,
            messageProvider: ctx?.messageProvider,
            accountId: event?.accountId ?? ctx?.accountId,
            senderId: event?.senderId ?? ctx?.senderId,
            senderIsOwner: event?.senderIsOwner,
            model: compact({ provider: ctx?.modelProviderId, id: ctx?.modelId }),
            workspace,
            trace: plainTrace(ctx?.trace),
            promptChars: typeof event?.prompt === "string" ? event.prompt.length : undefined,
          });
          try {
            return agentRunResult(await decide(body, settings.agentRunTimeoutMs));
          } catch (err) {
            const message = failClosedReason(err, "this turn was not sent to the model");
            log.warn?.(`[clawbutler] before_agent_run blocked: ${message}`);
            return { outcome: "block", reason: `clawbutler_${err?.kind ?? "error"}`, message, category: "clawbutler" };
          }
        },
        { timeoutMs: settings.runHookTimeoutMs },
      );

      // ---- reports (observe only; never awaited, never throw) ---------------------------------------------
      api.on("after_tool_call", (event, ctx) => {
        const result = event?.result;
        const details = isPlainObject(result?.details) ? result.details : undefined;
        report(
          compact({
            kind: "tool_result",
            agentId: ctx?.agentId,
            sessionKey: ctx?.sessionKey,
            sessionId: ctx?.sessionId,
            runId: ctx?.runId ?? event?.runId,
            toolCallId: ctx?.toolCallId ?? event?.toolCallId,
            toolName: event?.toolName ?? ctx?.toolName,
            durationMs: event?.durationMs,
            outcome: details?.status === "blocked" ? "blocked" : event?.error ? "error" : "ok",
            status: typeof details?.status === "string" ? details.status : undefined,
            deniedReason: typeof details?.deniedReason === "string" ? details.deniedReason : undefined,
            error: typeof event?.error === "string" ? event.error.slice(0, 4000) : undefined,
            params: boundedJson(event?.params, settings.maxReportBytes),
            result: boundedJson(result, settings.maxReportBytes),
            trace: plainTrace(ctx?.trace),
          }),
        );
      });

      api.on("model_call_ended", (event, ctx) => {
        report(
          compact({
            kind: "model_call",
            agentId: ctx?.agentId ?? runs.get(event?.runId ?? ctx?.runId)?.agentId,
            sessionKey: event?.sessionKey ?? ctx?.sessionKey,
            sessionId: event?.sessionId ?? ctx?.sessionId,
            runId: event?.runId ?? ctx?.runId,
            callId: event?.callId,
            provider: event?.provider,
            model: event?.model,
            api: event?.api,
            transport: event?.transport,
            durationMs: event?.durationMs,
            outcome: event?.outcome,
            errorCategory: event?.errorCategory,
            failureKind: event?.failureKind,
            timeToFirstByteMs: event?.timeToFirstByteMs,
            requestPayloadBytes: event?.requestPayloadBytes,
            responseStreamBytes: event?.responseStreamBytes,
            upstreamRequestIdHash: event?.upstreamRequestIdHash,
            trace: plainTrace(ctx?.trace),
          }),
        );
      });

      api.on("llm_output", (event, ctx) => {
        const last = isPlainObject(event?.lastAssistant) ? event.lastAssistant : undefined;
        report(
          compact({
            kind: "llm_output",
            agentId: ctx?.agentId,
            sessionKey: ctx?.sessionKey,
            sessionId: event?.sessionId ?? ctx?.sessionId,
            runId: event?.runId ?? ctx?.runId,
            provider: event?.provider,
            model: event?.model,
            resolvedRef: event?.resolvedRef,
            harnessId: event?.harnessId,
            usage: isPlainObject(event?.usage) ? event.usage : undefined,
            lastCallUsage: isPlainObject(last?.usage) ? last.usage : undefined,
            stopReason: typeof last?.stopReason === "string" ? last.stopReason : undefined,
            assistantTexts: Array.isArray(event?.assistantTexts) ? event.assistantTexts.length : undefined,
            trace: plainTrace(ctx?.trace),
          }),
        );
      });

      // ---- heartbeat (gateway process only): lets the sidecar see the plugin is loaded and can reach it ----
      // One timer per process, shared by every registration of this plugin: OpenClaw re-runs register() on
      // each hot reload, and plugin services were seen not to be restarted after an unrelated reload.
      if (api.registrationMode === "full" && settings.heartbeatSeconds > 0) {
        const hb = (globalThis[HEARTBEAT_KEY] ??= { timer: undefined, current: undefined, seconds: 0 });
        const enabledNow = () => {
          try {
            const cfg = api.runtime?.config?.current?.() ?? api.config;
            return cfg?.plugins?.enabled !== false && cfg?.plugins?.entries?.[PLUGIN_ID]?.enabled !== false;
          } catch {
            return true;
          }
        };
        hb.current = { report, settings, enabledNow, registeredAt: new Date().toISOString(), beats: 0 };
        const tick = () => {
          const cur = hb.current;
          if (!cur || !cur.enabledNow()) return;
          cur.beats += 1;
          cur.report({
            kind: "heartbeat",
            plugin: PLUGIN_VERSION,
            pid: process.pid,
            registeredAt: cur.registeredAt,
            beat: cur.beats,
            timeoutMs: cur.settings.timeoutMs,
            agentRunTimeoutMs: cur.settings.agentRunTimeoutMs,
          });
        };
        if (!hb.timer || hb.seconds !== settings.heartbeatSeconds) {
          if (hb.timer) clearInterval(hb.timer);
          hb.seconds = settings.heartbeatSeconds;
          hb.timer = setInterval(tick, settings.heartbeatSeconds * 1000);
          hb.timer.unref?.();
        }
        // First beat soon after (re)registration, so the sidecar learns about a reload quickly.
        setTimeout(tick, 2000).unref?.();
        api.on("gateway_stop", () => {
          if (hb.timer) clearInterval(hb.timer);
          hb.timer = undefined;
          hb.current = undefined;
        });
      }
    },
  };
}

export default createPlugin();
