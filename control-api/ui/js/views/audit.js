// Audit search (filters, newest first, "load more") and the trace view: every record of one
// call chain, oldest first. The results do not refresh live: a list that shifts while it is
// read is no use to an investigator; searching again shows what is new.

import { h, replace, dl, select, pre } from '../dom.js';
import { t } from '../i18n.js';
import { get } from '../api.js';
import { errorBox, emptyState, loading, riskBadge, statusBadge } from '../components.js';
import { listPage } from '../listpage.js';
import { when, usd, subjectLine, localToIso } from '../format.js';

const KINDS = ['', 'model_call', 'exec', 'tool_call', 'approval', 'grant', 'budget', 'policy_reload', 'kill_switch', 'config', 'auth', 'gateway', 'retention', 'health', 'audit_outage', 'governance', 'plugin', 'notification', 'cost'];
const RISKS = ['', 'low', 'medium', 'high', 'critical'];
const ACTIONS = ['', 'allow', 'deny', 'hold'];

export function mount(root, ctx) {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const f = {
    agent: h('input', { type: 'text', name: 'agent', autocapitalize: 'off', 'data-testid': 'f-agent' }),
    kind: select({ name: 'kind', 'data-testid': 'f-kind' }, KINDS.map((k) => [k, k ? t(`kind.${k}`, {}, k) : t('common.any')]), ''),
    risk: select({ name: 'risk' }, RISKS.map((k) => [k, k ? t(`risk.${k}`) : t('common.any')]), ''),
    action: select({ name: 'action' }, ACTIONS.map((k) => [k, k ? t(`status.${k}`) : t('common.any')]), ''),
    keyword: h('input', { type: 'search', name: 'keyword', 'data-testid': 'f-keyword' }),
    from: h('input', { type: 'datetime-local', name: 'from' }),
    to: h('input', { type: 'datetime-local', name: 'to' }),
  };
  const traceEl = h('div', { class: 'trace', 'data-testid': 'trace' });
  const filters = h('form', { class: 'filters card' },
    h('label', {}, t('field.agent'), f.agent),
    h('label', {}, t('field.kind'), f.kind),
    h('label', {}, t('field.risk'), f.risk),
    h('label', {}, t('field.action'), f.action),
    h('label', { class: 'wide' }, t('audit.keyword'), f.keyword),
    h('label', {}, t('audit.from'), f.from),
    h('label', {}, t('audit.to'), f.to),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', 'data-testid': 'audit-search' }, t('audit.search'))));

  const page = listPage(root, ctx, {
    title: t('audit.title'), above: [traceEl], filters, testid: 'audit-results',
    path: '/api/v1/audit', limit: 50,
    params: () => ({
      agent: f.agent.value.trim(), kind: f.kind.value, risk: f.risk.value, action: f.action.value,
      keyword: f.keyword.value.trim(), from: localToIso(f.from.value), to: localToIso(f.to.value),
    }),
    empty: [t('audit.empty'), t('audit.empty_hint')],
    item: row,
  });

  function row(r) {
    return h('article', { class: 'card record', 'data-testid': 'audit-record', 'data-kind': r.kind || '' },
      h('div', { class: 'card-head' },
        h('span', { class: 'seq' }, `#${r.seq}`),
        h('span', { class: 'kind' }, t(`kind.${r.kind}`, {}, r.kind || '')),
        statusBadge(r.action), riskBadge(r.risk),
        r.agent ? h('span', { class: 'agent' }, `@${r.agent}`) : null,
        h('span', { class: 'spacer' }),
        h('time', { class: 'muted small', datetime: r.ts }, when(r.ts))),
      h('div', { class: 'subject' }, subjectLine(r.subject)),
      r.reason ? h('p', { class: 'reason' }, r.reason) : null,
      dl([
        [t('field.rule'), r.rule ? h('code', {}, r.rule) : ''],
        [t('field.cost'), r.cost_usd != null ? usd(r.cost_usd) : ''],
        [t('field.latency'), r.latency_ms != null ? t('unit.ms', { n: Number(r.latency_ms).toFixed(1) }) : ''],
        [t('field.actor'), r.actor],
        [t('field.outcome'), r.outcome],
        [t('field.trace'), r.trace_id ? h('a', { href: '#', 'data-testid': 'trace-link', onclick: (e) => { e.preventDefault(); showTrace(r.trace_id); } }, r.trace_id) : ''],
      ]),
      h('details', {}, h('summary', {}, t('audit.raw')), pre(r)));
  }

  async function showTrace(id) {
    replace(traceEl, loading());
    traceEl.scrollIntoView({ block: 'start' });
    try {
      const res = await get(`/api/v1/audit/trace/${encodeURIComponent(id)}`);
      const items = (res && res.items) || [];
      replace(traceEl, h('section', { class: 'card trace-card' },
        h('div', { class: 'card-head' }, h('h2', {}, t('audit.trace_title')), h('code', {}, id), h('span', { class: 'spacer' }),
          h('button', { class: 'ghost', onclick: () => replace(traceEl) }, t('common.close'))),
        items.length ? h('ol', { class: 'timeline' }, items.map((r) => h('li', {},
          h('time', { datetime: r.ts }, when(r.ts)), ' ',
          h('strong', {}, t(`kind.${r.kind}`, {}, r.kind || '')), ' ', statusBadge(r.action), ' ', riskBadge(r.risk), ' ',
          h('span', {}, [subjectLine(r.subject), r.reason, r.actor ? t('audit.by', { actor: r.actor }) : ''].filter(Boolean).join(' · ')))))
          : emptyState(t('audit.trace_empty'))));
    } catch (err) {
      replace(traceEl, errorBox(err));
    }
  }

  if (params.get('trace')) showTrace(params.get('trace'));
  return page.unmount;
}
