// Grants made by allow-always: each shown with its breadth in words, revocable
// (DELETE /api/v1/grants/{id}). In a fleet each also says where it applies (every sidecar,
// or only this one) and the sidecar whose API created it.

import { h, dl } from '../dom.js';
import { t } from '../i18n.js';
import { del } from '../api.js';
import { toast, cardMsg, confirmIn } from '../components.js';
import { listPage } from '../listpage.js';
import { when } from '../format.js';
import { describeScope, breadthBadge } from './scope.js';

export function mount(root, ctx) {
  const page = listPage(root, ctx, {
    title: t('grants.title'), hint: t('grants.hint'), testid: 'grants',
    path: '/api/v1/grants', key: (g) => g.id, events: ['grant'],
    empty: [t('grants.empty'), t('grants.empty_hint')],
    item: card,
  });
  // In a fleet, grants made or revoked through other sidecars make no event on this
  // sidecar's stream: reload every 5 s.
  const fleetTimer = setInterval(() => { if (ctx.fleet) page.reload(); }, 5000);
  return () => { page.unmount(); clearInterval(fleetTimer); };
}

function card(g, page) {
  const msg = cardMsg();
  const panel = h('div', { class: 'panel' });
  const expired = g.expired;
  // Only lists in fleet mode carry `fleet`; without a fleet nothing is added.
  const badge = (label, title) => h('span', { class: 'badge', 'data-testid': 'grant-reach', title }, label);
  const reach = g.fleet === true ? badge(t('grants.fleet'), t('grants.fleet_title', { id: g.sidecar }))
    : g.fleet === false ? badge(t('grants.local'), t('grants.local_title', { id: g.sidecar }))
      : null;
  const revoke = () => confirmIn(panel, msg, {
    text: t('grants.revoke_confirm'), confirm: t('grants.revoke'), testid: 'revoke-confirm',
    onConfirm: async () => {
      await del(`/api/v1/grants/${encodeURIComponent(g.id)}`);
      toast(() => t('grants.revoked'));
    },
    then: page.reload,
  });
  return h('article', { class: `card grant${expired ? ' muted-card' : ''}`, 'data-testid': 'grant', 'data-id': g.id },
    h('div', { class: 'card-head' },
      breadthBadge(g.breadth),
      h('span', { class: 'kind' }, t(`kind.${g.kind}`, {}, g.kind || '')),
      h('span', { class: 'agent' }, `@${g.agent}`),
      reach,
      expired ? h('span', { class: 'badge st-expired' }, t('status.expired')) : null),
    h('p', { class: 'breadth' }, describeScope(g)),
    dl([
      [t('scope.pattern'), h('code', {}, g.pattern)],
      [t('scope.args'), g.kind === 'model_call' ? '' : g.arg_pattern ? h('code', {}, g.arg_pattern) : t('scope.args_any')],
      [t('field.expires'), g.expires_at ? when(g.expires_at) : t('scope.until_revoked')],
      [t('field.created'), when(g.created_at)],
      [t('field.created_by'), g.created_by],
      [t('field.approval'), g.approval_id],
      [t('grants.sidecar'), g.sidecar ? h('span', { 'data-testid': 'grant-sidecar' }, g.sidecar) : null],
      [t('field.id'), g.id],
    ]),
    h('div', { class: 'actions' },
      h('button', { class: 'deny', 'data-testid': 'revoke', 'data-needs': 'approver', onclick: revoke }, t('grants.revoke'))),
    panel, msg);
}
