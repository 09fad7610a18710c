// Fleet (fleet mode only; the tab shows when GET /api/v1/fleet/sidecars answers): every
// sidecar sharing this one's fleet database, with its version, when it started, how long ago
// its last heartbeat was (on the database's clock, so no two sidecars' clocks are compared),
// whether it is stale, its OpenClaw gateway link at that heartbeat, how far its audit log's
// shipping to the central audit trail lags (records, seconds), and its policy (policy
// rollout): the revision serving, which fleet bundle (or its own bundle), and the last
// bundle it refused with the reason. Heartbeats make no audit events, so the page
// refreshes every 5 s.

import { h, dl } from '../dom.js';
import { post } from '../api.js';
import { confirmIn, cardMsg, toast, setMsg, errorText } from '../components.js';
import { t } from '../i18n.js';
import { listPage } from '../listpage.js';
import { when } from '../format.js';

export function mount(root, ctx) {
  return listPage(root, ctx, {
    title: t('fleet.title'), hint: t('fleet.hint'), testid: 'fleet-sidecars', above: [fleetKillForm()],
    path: '/api/v1/fleet/sidecars', key: (s) => s.id, version: (s) => `${s.stale}:${s.gateway_link}:${s.version}`
      + `:${s.audit_lag_records}:${Math.round(s.audit_lag_seconds || 0)}:${policyKey(s.policy)}:${s.kill ? s.kill.epoch : ''}`,
    refresh: 5000, empty: [t('fleet.empty')],
    item: card,
  }).unmount;
}

// A fleet kill of one agent on every sidecar, or (agent left blank) of every agent of the
// fleet, and lifting it (admin; docs/fleet.md "Fleet kill switch"). The kill is in force on
// every connected sidecar within the poll interval; the API's answer is shown.
function fleetKillForm() {
  const msg = cardMsg();
  const agent = h('input', { type: 'text', name: 'agent', placeholder: t('fleet.kill_agent'), 'data-testid': 'fleet-kill-agent' });
  const reason = h('input', { type: 'text', name: 'reason', required: true, placeholder: t('agents.reason'), 'data-testid': 'fleet-kill-reason' });
  const send = (kind) => async (e) => {
    e.preventDefault();
    if (!reason.value.trim()) { reason.reportValidity(); return; }
    const who = agent.value.trim();
    const body = { reason: reason.value.trim(), ...(who ? { agent: who } : {}), ...(kind === 'recover' ? { confirm: true } : {}) };
    try {
      await post(`/api/v1/fleet/${kind}`, body);
      setMsg(msg, t(`fleet.all_${kind}_done`, { who: who || t('fleet.every_agent') }));
    } catch (err) {
      setMsg(msg, errorText(err), 'error');
    }
  };
  return h('form', { class: 'card editor', 'data-needs': 'admin', 'data-testid': 'fleet-kill-form', onsubmit: send('kill') },
    h('strong', {}, t('fleet.kill_title')),
    h('div', { class: 'actions' }, agent, reason,
      h('button', { type: 'submit', class: 'deny', 'data-testid': 'fleet-kill-all' }, t('fleet.kill_all')),
      h('button', { type: 'button', class: 'allow', 'data-testid': 'fleet-recover-all', onclick: send('recover') }, t('fleet.recover_all'))),
    msg);
}

function card(s, page) {
  const panel = h('div', { class: 'panel' });
  const msg = cardMsg();
  // A fleet kill of this sidecar's gateway: every agent it serves stops (admin).
  const act = (kind) => () => confirmIn(panel, msg, {
    text: t(`fleet.${kind}_confirm`, { id: s.id }), label: t('agents.reason'), confirm: t(`fleet.${kind}`),
    kind: kind === 'kill' ? 'deny' : 'allow', testid: `fleet-${kind}-confirm`,
    onConfirm: async (reason) => {
      await post(`/api/v1/fleet/${kind}`, kind === 'kill' ? { sidecar: s.id, reason } : { sidecar: s.id, reason, confirm: true });
      toast(() => t(`fleet.${kind}_done`, { id: s.id }));
    },
    then: page.reload,
  });
  const health = s.stale ? 'offline' : 'healthy';
  const link = s.gateway_link || 'none';
  const linkClass = { connected: 'health-healthy', disconnected: 'health-offline', none: '' }[link] || '';
  const age = Math.max(0, Math.round((s.heartbeat_age_ms || 0) / 1000));
  return h('article', { class: 'card fleet-sidecar', 'data-testid': 'fleet-sidecar', 'data-id': s.id, 'data-stale': String(Boolean(s.stale)) },
    h('div', { class: 'card-head' },
      h('strong', {}, s.id),
      h('span', { class: `badge health-${health}`, 'data-testid': 'heartbeat-state' }, s.stale ? t('fleet.stale') : t('fleet.live')),
      h('span', { class: `badge ${linkClass}`, 'data-testid': 'gateway-link', 'data-link': link }, t(`fleet.link_${link}`))),
    dl([
      [t('fleet.heartbeat'), h('span', { 'data-testid': 'heartbeat-age' }, t('fleet.heartbeat_age', { n: age }))],
      [t('fleet.version'), h('code', {}, s.version || '')],
      [t('fleet.started'), when(s.started_at)],
      [t('fleet.audit_lag'), auditLag(s)],
      [t('fleet.policy'), policy(s.policy)],
    ]),
    s.kill ? h('p', { class: 'health-why', 'data-testid': 'fleet-killed' },
      h('span', { class: 'badge risk-critical' }, t('fleet.killed')), ' ', s.kill.reason || '') : null,
    h('div', { class: 'actions' },
      s.kill
      ? h('button', { class: 'allow', 'data-needs': 'admin', 'data-testid': 'fleet-recover', onclick: act('recover') }, t('fleet.recover'))
      : h('button', { class: 'deny', 'data-needs': 'admin', 'data-testid': 'fleet-kill', onclick: act('kill') }, t('fleet.kill'))),
    panel, msg);
}

// The central audit trail: records of this sidecar not yet shipped, and the age of the oldest.
function auditLag(s) {
  const n = s.audit_lag_records;
  const text = n == null ? t('fleet.audit_lag_none')
    : t('fleet.audit_lag_value', { n, s: Math.round(s.audit_lag_seconds || 0) });
  return h('span', { 'data-testid': 'audit-lag', 'data-records': n == null ? '' : String(n) }, text);
}

function policyKey(p) {
  return p ? `${p.revision}:${p.applied_seq}:${p.refused_seq}` : '';
}

function policy(p) {
  if (!p) return h('span', { 'data-testid': 'policy', 'data-revision': '' }, t('fleet.policy_unknown'));
  const from = p.applied_seq == null ? t('fleet.policy_own') : t('fleet.policy_bundle', { n: p.applied_seq });
  return h('span', { 'data-testid': 'policy', 'data-revision': p.revision, 'data-applied': String(p.applied_seq ?? '') },
    h('code', {}, p.revision), ' ', from,
    p.refused_seq == null ? null : h('span', { class: 'badge health-offline', 'data-testid': 'policy-refused', title: p.error || '' },
      t('fleet.policy_refused', { n: p.refused_seq })),
    p.refused_seq == null ? null : h('div', { class: 'muted', 'data-testid': 'policy-error' }, p.error || ''));
}
