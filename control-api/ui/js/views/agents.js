// Agents: health (with why and since when), last activity and the kill switch. Kill and
// recover both ask for a reason and a second tap; recover sends confirm: true, which the API
// requires. Every health change is a `health` event, which reloads the list; it also refreshes
// every 15 s so "since" stays current.

import { h, dl } from '../dom.js';
import { t } from '../i18n.js';
import { post } from '../api.js';
import { toast, cardMsg, confirmIn } from '../components.js';
import { listPage } from '../listpage.js';
import { when, ago } from '../format.js';

export function mount(root, ctx) {
  return listPage(root, ctx, {
    title: t('agents.title'), testid: 'agents',
    path: '/api/v1/agents', key: (a) => a.id, events: ['kill_switch', 'health'], refresh: 15000,
    empty: [t('agents.empty'), t('agents.empty_hint')],
    item: card,
  }).unmount;
}

function card(a, page) {
  const panel = h('div', { class: 'panel' });
  const msg = cardMsg();
  const name = a.name || a.id;
  const act = (kind) => () => confirmIn(panel, msg, {
    text: t(`agents.${kind}_confirm`, { name }), label: t('agents.reason'), confirm: t(`agents.${kind}`),
    kind: kind === 'kill' ? 'deny' : 'allow',
    onConfirm: async (reason) => {
      await post(`/api/v1/agents/${encodeURIComponent(a.id)}/${kind}`, kind === 'kill' ? { reason } : { reason, confirm: true });
      toast(() => t(`agents.${kind}_done`, { name }));
    },
    then: page.reload,
  });
  return h('article', { class: `card agent-card${a.killed ? ' killed' : ''}`, 'data-testid': 'agent' },
    h('div', { class: 'card-head' },
      h('strong', {}, name),
      h('span', { class: `badge health-${a.health}`, 'data-testid': 'health' }, t(`health.${a.health}`, {}, a.health || '')),
      a.killed ? h('span', { class: 'badge risk-critical' }, t('agents.killed')) : null),
    a.health_reason ? h('p', { class: 'health-why', 'data-testid': 'health-reason' }, a.health_reason) : null,
    dl([
      [t('field.id'), a.id],
      [t('agents.health_since'), a.health_since ? t('agents.activity', { ago: ago(a.health_since), time: when(a.health_since) }) : ''],
      [t('agents.last_activity'), a.last_activity ? t('agents.activity', { ago: ago(a.last_activity), time: when(a.last_activity) }) : t('common.never')],
    ]),
    h('div', { class: 'actions' }, a.killed
      ? h('button', { class: 'allow', 'data-needs': 'admin', onclick: act('recover') }, t('agents.recover'))
      : h('button', { class: 'deny', 'data-needs': 'admin', onclick: act('kill') }, t('agents.kill'))),
    panel, msg);
}
