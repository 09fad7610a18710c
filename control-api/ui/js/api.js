// Control-API client: bearer token from sessionStorage, JSON in and out, problem+json errors
// turned into ApiError so every view can show the server's own `detail`. The UI ships inside
// the binary that serves the API, so it only calls routes that binary serves (a test in
// control-api/src/ui_checks.rs compares every '/api/v1/...' here with the router).

import { t } from './i18n.js';

const TOKEN_KEY = 'clawbutler.token';
let unauthorizedHandler = () => {};

/** The signed-in token (sessionStorage: gone when the tab closes). */
export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

/** Called with the ApiError when any request answers 401 (token revoked or wrong). */
export function onUnauthorized(fn) { unauthorizedHandler = fn; }

/** A failed request: HTTP status plus the problem+json body (title, detail, extras). */
export class ApiError extends Error {
  constructor(status, problem, path) {
    const p = problem && typeof problem === 'object' ? problem : {};
    super(p.detail || p.title || t('err.http', { status }));
    this.status = status;
    this.title = p.title || '';
    this.detail = p.detail || '';
    this.problem = p;
    this.path = path;
  }
}

/** Send a request; resolves to `{status, data}` (the parsed JSON body, or null), rejects with
 * ApiError. For routes whose success codes differ in meaning (a rollback answers 202 when it
 * waits for an approval); the rest use `api`. */
export async function request(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.idempotencyKey) headers['Idempotency-Key'] = opts.idempotencyKey;
  const res = await send(method, path, headers, body === undefined ? undefined : JSON.stringify(body));
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) fail(res, data || { detail: text.slice(0, 300) }, path, opts);
  return { status: res.status, data };
}

/** Send a request; resolves to the parsed JSON body (or null), rejects with ApiError. */
export async function api(method, path, body, opts = {}) {
  return (await request(method, path, body, opts)).data;
}

/** GET bytes (a download): resolves to a Blob, rejects with ApiError like `api`. */
export async function download(path, opts = {}) {
  const res = await send('GET', path, { Accept: 'application/octet-stream, application/problem+json' });
  if (!res.ok) {
    const text = await res.text();
    let data = null;
    try { data = JSON.parse(text); } catch { data = { detail: text.slice(0, 300) }; }
    fail(res, data, path, opts);
  }
  return res.blob();
}

/** fetch with the bearer token; a network failure becomes an ApiError with status 0. */
async function send(method, path, headers, body) {
  const token = session.token;
  const all = token ? { ...headers, Authorization: `Bearer ${token}` } : headers;
  try {
    return await fetch(path, { method, headers: all, body, cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, { title: t('err.network'), detail: t('err.network_detail', { msg: e.message }) }, path);
  }
}

function fail(res, problem, path, opts) {
  const err = new ApiError(res.status, problem, path);
  if (res.status === 401 && !opts.noRedirect) unauthorizedHandler(err);
  throw err;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body === undefined ? {} : body, opts);
export const put = (path, body, opts) => api('PUT', path, body === undefined ? {} : body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** `?a=1&b=2` from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A fresh key for Idempotency-Key headers (retries of one click reuse it). */
export function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

/** What a live event is about: its SSE event name, or the audit record kind it carries. */
export function eventKind(ev) {
  const data = ev && ev.data && typeof ev.data === 'object' ? ev.data : {};
  const type = String((ev && ev.type) || '');
  if (type && type !== 'message' && type !== 'audit') return type.split(/[._]/)[0];
  return String(data.kind || (data.record && data.record.kind) || type);
}
