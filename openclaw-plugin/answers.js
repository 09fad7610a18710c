// The sidecar's answers as OpenClaw hook results, and the bounded, plain copies of OpenClaw's
// values the plugin sends (ClawButler plugin for OpenClaw; index.js has the overview).

import { compact, isPlainObject, nonEmpty, posInt } from "./common.js";
import { SidecarError } from "./sidecar.js";

const ACTIONS = new Set(["allow", "block", "rewrite", "approve"]);
const SEVERITIES = new Set(["info", "warning", "critical"]);
const APPROVAL_DECISIONS = new Set(["allow-once", "allow-always", "deny"]);

/** A value as JSON, or a marker with a prefix when it is larger than `max` bytes. */
export function boundedJson(value, max) {
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

export function plainTrace(trace) {
  if (!isPlainObject(trace)) return undefined;
  return compact({ traceId: trace.traceId, spanId: trace.spanId, parentSpanId: trace.parentSpanId });
}

export function plainRequester(r) {
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
