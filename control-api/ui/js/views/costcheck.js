// The cross-check on the Cost page (GET /api/v1/cost/crosscheck): the sidecar's metering
// beside OpenClaw's own usage records per agent and UTC day, mismatches first. It runs on
// request, not on every load: OpenClaw may take seconds to refresh its usage cache, and
// without a linked gateway the route answers 404, shown as a plain note.

import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { get, query } from '../api.js';
import { busy, errorBox } from '../components.js';

const ORDER = { bypassed: 0, sidecar_only: 1, match: 2 };

/** The cross-check section for the period `since` (7d, 30d, ...). */
export function crossCheck(since) {
  const out = h('div', { 'data-testid': 'cost-crosscheck' });
  const run = h('button', { class: 'ghost', 'data-testid': 'cost-crosscheck-run' }, t('costcheck.run'));
  run.addEventListener('click', () => busy(run, async () => {
    try {
      replace(out, result(await get(`/api/v1/cost/crosscheck${query({ since })}`)));
    } catch (err) {
      replace(out, err && err.status === 404 ? h('p', { class: 'muted' }, t('costcheck.no_gateway')) : errorBox(err));
    }
  }));
  return h('section', { class: 'card' },
    h('div', { class: 'card-head' }, h('h2', {}, t('costcheck.title')), h('span', { class: 'spacer' }), run),
    h('p', { class: 'muted small' }, t('costcheck.hint')), out);
}

function tokens(x, keys) {
  return keys.reduce((n, k) => n + (Number(x && x[k]) || 0), 0);
}

function result(v) {
  const items = [...(v.items || [])].sort((a, b) => (ORDER[a.verdict] - ORDER[b.verdict]) || a.agent.localeCompare(b.agent) || a.date.localeCompare(b.date));
  const cols = [t('costcheck.agent'), t('costcheck.day'), t('costcheck.sidecar'), t('costcheck.openclaw'), t('costcheck.difference'), t('costcheck.verdict')];
  const row = (r) => {
    const cells = [
      r.agent, r.date,
      tokens(r.sidecar, ['input_tokens', 'output_tokens']).toLocaleString(),
      tokens(r.openclaw, ['input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens']).toLocaleString(),
      Number(r.token_difference || 0).toLocaleString(),
    ];
    const badge = h('span', { class: r.verdict === 'match' ? 'badge' : 'badge risk-high' }, t(`costcheck.v_${r.verdict}`, {}, r.verdict));
    return h('tr', { 'data-verdict': r.verdict },
      ...cells.map((c, i) => h('td', { 'data-label': cols[i] }, c)), h('td', { 'data-label': cols[5] }, badge));
  };
  return h('div', {},
    h('p', { 'data-testid': 'cost-crosscheck-summary' }, v.mismatches
      ? t('costcheck.mismatches', { n: v.mismatches, since: v.since, until: v.until })
      : t('costcheck.all_match', { since: v.since, until: v.until })),
    items.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
      h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, items.map(row)))) : null,
    (v.errors || []).map((e) => h('p', { class: 'state error' }, t('costcheck.error', { agent: e.agent, error: e.error }))));
}
