// Budgets with spend bars; an open breaker is flagged; admins reset a window with a reason
// (POST /api/v1/budgets/{id}/reset).

import { h } from '../dom.js';
import { t } from '../i18n.js';
import { post } from '../api.js';
import { toast, cardMsg, confirmIn } from '../components.js';
import { listPage } from '../listpage.js';
import { usd } from '../format.js';

export function mount(root, ctx) {
  return listPage(root, ctx, {
    title: t('budgets.title'), testid: 'budgets',
    path: '/api/v1/budgets', key: (b) => b.id, events: ['budget'],
    empty: [t('budgets.empty'), t('budgets.empty_hint')],
    item: card,
  }).unmount;
}

function card(b, page) {
  const limit = Number(b.limit_usd) || 0;
  const spent = Number(b.spent_usd) || 0;
  const pct = limit > 0 ? Math.min(100, (spent / limit) * 100) : 0;
  const used = t('budgets.spent_of', { pct: Math.round(pct) });
  const level = b.open || pct >= 100 ? 'over' : pct >= 80 ? 'warn' : 'ok';
  const fill = h('div', { class: `fill ${level}` });
  fill.style.width = `${pct.toFixed(1)}%`; // CSSOM, allowed under style-src 'self'
  const panel = h('div', { class: 'panel' });
  const msg = cardMsg();
  const reset = () => confirmIn(panel, msg, {
    label: t('budgets.reset_reason'), confirm: t('budgets.reset_confirm'),
    onConfirm: async (reason) => {
      await post(`/api/v1/budgets/${encodeURIComponent(b.id)}/reset`, { reason });
      toast(() => t('budgets.reset_done'));
    },
    then: page.reload,
  });
  return h('article', { class: 'card budget', 'data-testid': 'budget' },
    h('div', { class: 'card-head' },
      h('strong', {}, b.scope || b.id),
      h('span', { class: 'badge' }, t(`window.${b.window}`, {}, b.window)),
      b.open ? h('span', { class: 'badge risk-critical' }, t('budgets.open')) : null,
      h('span', { class: 'spacer' }),
      h('span', { class: 'amount' }, `${usd(spent)} / ${usd(limit)}`)),
    h('div', {
      class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(pct),
      'aria-label': used,
    }, fill),
    h('p', { class: 'muted small' }, [b.id, used, b.open ? t('budgets.open_hint') : ''].filter(Boolean).join(' · ')),
    h('div', { class: 'actions', 'data-needs': 'admin' }, h('button', { class: 'ghost', onclick: reset }, t('budgets.reset'))),
    panel, msg);
}
