// Live events from GET /api/v1/events. EventSource cannot send an Authorization header, so
// this reads the stream with fetch() and parses Server-Sent Events itself. On a drop it
// reconnects with Last-Event-ID (= the last audit seq seen) so the server replays what was
// missed; a silent stream (no heartbeat for 45 s) counts as a drop.

import { session } from './api.js';

const SILENCE_MS = 45000;

/**
 * Start listening. `onEvent({type, id, data})` per event, `onState(state)` with
 * 'connecting' | 'live' | 'retrying' | 'unauthorized'. Returns stop().
 */
export function subscribe({ onEvent, onState }) {
  let stopped = false;
  let lastId = null;
  let controller = null;
  let backoff = 1000;
  let watchdog = null;

  const kick = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => controller && controller.abort(), SILENCE_MS);
  };

  async function run() {
    while (!stopped) {
      onState(lastId === null ? 'connecting' : 'retrying');
      controller = new AbortController();
      const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${session.token}` };
      if (lastId !== null) headers['Last-Event-ID'] = lastId;
      try {
        const res = await fetch('/api/v1/events', { headers, signal: controller.signal, cache: 'no-store' });
        if (res.status === 401) { onState('unauthorized'); return; }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
        onState('live');
        backoff = 1000;
        kick();
        await read(res.body.getReader(), (ev) => {
          if (ev.id !== null) lastId = ev.id;
          onEvent(ev);
        }, kick);
      } catch (e) {
        if (stopped) return;
      } finally {
        clearTimeout(watchdog);
      }
      if (stopped) return;
      onState('retrying');
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 15000);
    }
  }

  run();
  return () => { stopped = true; clearTimeout(watchdog); if (controller) controller.abort(); };
}

/** Parse an SSE byte stream (WHATWG rules: fields, comments, blank line dispatches). */
async function read(reader, emit, onBytes) {
  const decoder = new TextDecoder();
  let buf = '';
  let data = [];
  let type = '';
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onBytes();
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        if (data.length) {
          const text = data.join('\n');
          let parsed = text;
          try { parsed = JSON.parse(text); } catch { /* plain text event */ }
          emit({ type: type || 'message', id, data: parsed });
        }
        data = []; type = '';
        continue;
      }
      if (line.startsWith(':')) continue; // heartbeat comment
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? '' : line.slice(colon + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'data') data.push(val);
      else if (field === 'event') type = val;
      else if (field === 'id' && !val.includes('\0')) id = val;
    }
  }
}
