// ClawButler plugin for OpenClaw (>= 2026.9.6).
//
// Its only job is to ask the ClawButler sidecar; every policy decision is made there.
//   before_tool_call  -> POST <decisionUrl> {kind:"tool_call", ...}  -> allow | block | rewrite | approve
//   before_agent_run  -> POST <decisionUrl> {kind:"agent_run", ...}  -> allow | block (killed, over budget)
//   after_tool_call, model_call_ended, llm_output, heartbeat -> POST <reportUrl> (fire and forget)
// Anything other than a well-formed answer in time (sidecar down, non-2xx, timeout, garbage) blocks the
// tool call or the turn with a reason that says ClawButler could not be reached (fail closed).
//
// Plain ES modules, no dependencies (node built-ins only; sidecar.js says why not fetch):
// common.js (identity, value helpers), sidecar.js (the POST to the sidecar, fail-closed reasons),
// settings.js (config and hook timeouts), answers.js (answers as hook results); this file
// registers the hooks.

import { PLUGIN_ID, PLUGIN_VERSION, PROTOCOL_VERSION, compact, isPlainObject, nonEmpty } from "./common.js";
import { SidecarError, postJson, failClosedReason } from "./sidecar.js";
import { resolveSettings } from "./settings.js";
import { boundedJson, plainTrace, plainRequester, toolCallResult, agentRunResult } from "./answers.js";

export { postJson, failClosedReason } from "./sidecar.js";
export { readFileSecretRef, resolveSettings } from "./settings.js";
export { toolCallResult, agentRunResult } from "./answers.js";

const MAX_REPORTS_IN_FLIGHT = 64;
const MAX_RUNS_REMEMBERED = 512;
const HEARTBEAT_KEY = Symbol.for("clawbutler.openclaw-plugin.heartbeat");

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
