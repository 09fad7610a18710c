// The plugin's settings from its OpenClaw config, with defaults, and the hook timeouts it
// registers so its own limits expire first (ClawButler plugin for OpenClaw; index.js has the
// overview).

import fs from "node:fs";

import { PLUGIN_ID, isPlainObject, nonEmpty, posInt } from "./common.js";

const OPENCLAW_DEFAULT_GATE_TIMEOUT_MS = 15000; // before_tool_call / before_agent_run default in OpenClaw
const GATE_MARGIN_MS = 1000; // answer before OpenClaw's own hook timeout so our reason reaches the model
const MAX_HOOK_TIMEOUT_MS = 600000; // OpenClaw caps operator hook timeouts here

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
