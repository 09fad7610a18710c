// Talking to the sidecar: one JSON POST with its timeout, cancellation, size cap and the one
// retry a closed keep-alive socket allows, and the fail-closed sentence when no usable answer
// came (ClawButler plugin for OpenClaw; index.js has the overview). node:http / node:https only:
// global fetch is undici, whose default 300 s headers timeout would cut a long-poll hold short
// of OpenClaw's 600 s hook ceiling.

import http from "node:http";
import https from "node:https";

import { PLUGIN_VERSION, isPlainObject, nonEmpty } from "./common.js";

const USER_AGENT = `clawbutler-openclaw-plugin/${PLUGIN_VERSION}`;
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

// No socket cap: a held decision (long poll) occupies its socket, and other decisions must not queue behind it.
const agents = {
  "http:": new http.Agent({ keepAlive: true }),
  "https:": new https.Agent({ keepAlive: true }),
};

/** Thrown by postJson; `kind` is one of config|unreachable|timeout|aborted|status|garbage. */
export class SidecarError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
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
