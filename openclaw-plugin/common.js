// The plugin's identity and the small value helpers its modules share (ClawButler plugin for
// OpenClaw; index.js has the overview).

export const PLUGIN_ID = "clawbutler";
export const PLUGIN_VERSION = "0.1.0";
export const PROTOCOL_VERSION = 1;

export const isPlainObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
export const nonEmpty = (v) => (typeof v === "string" && v.trim() ? v.trim() : undefined);
export const posInt = (v) => (Number.isInteger(v) && v > 0 ? v : undefined);

/** Drop undefined values so the JSON body only carries what OpenClaw provided. */
export function compact(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out;
}
