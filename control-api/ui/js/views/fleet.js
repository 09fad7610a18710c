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
import { confirmIn, cardMsg, toast } from '../components.js';
import { t } from '../i18n.js';
import { listPage } from '../listpage.js';
import { when } from '../format.js';

export function mount(root, ctx) {
  return listPage(root, ctx, {
    title: t('fleet.title'), hint: t('fleet.hint'), testid: 'fleet-sidecars',
    path: '/api/v1/fleet/sidecars', key: (s) => s.id, version: (s) => `${s.stale}:${s.gateway_link}:${s.version}`
      + `:${s.audit_lag_records}:${Math.round(s.audit_lag_seconds || 0)}:${policyKey(s.policy)}:${s.kill ? s.kill.epoch : ''}`,
    refresh: 5000, empty: [t('fleet.empty')],
    item: card,
  }).unmount;
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
