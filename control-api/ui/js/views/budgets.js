// Budgets with spend bars; an open breaker is flagged; admins reset a window with a reason.

import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, eventKind } from '../api.js';
import { errorBox, emptyState, loading, busy, toast, pageHead, errorText } from '../components.js';
import { usd } from '../format.js';

export function mount(root, ctx) {
  const listEl = h('div', { class: 'list', 'data-testid': 'budgets' });
  replace(root, pageHead(t('budgets.title')), listEl);

  async function load() {
    if (!listEl.childElementCount) replace(listEl, loading());
    try {
      const page = await get('/api/v1/budgets');
      const items = (page && page.items) || [];
      replace(listEl, items.length ? items.map(card) : emptyState(t('budgets.empty'), t('budgets.empty_hint')));
    } catch (err) {
      replace(listEl, errorBox(err));
    }
  }

  function card(b) {
    const limit = Number(b.limit_usd) || 0;
    const spent = Number(b.spent_usd) || 0;
    const pct = limit > 0 ? Math.min(100, (spent / limit) * 100) : 0;
    const level = b.open || pct >= 100 ? 'over' : pct >= 80 ? 'warn' : 'ok';
    const fill = h('div', { class: `fill ${level}` });
    fill.style.width = `${pct.toFixed(1)}%`; // CSSOM, allowed under style-src 'self'
    const panel = h('div', { class: 'panel' });
    const msg = h('div', { class: 'card-msg', role: 'status' });
    const reason = h('input', { type: 'text', required: true, placeholder: t('budgets.reset_reason') });
    return h('article', { class: 'card budget', 'data-testid': 'budget' },
      h('div', { class: 'card-head' },
        h('strong', {}, b.scope || b.id),
        h('span', { class: 'badge' }, t(`window.${b.window}`, {}, b.window)),
        b.open ? h('span', { class: 'badge risk-critical' }, t('budgets.open')) : null,
        h('span', { class: 'spacer' }),
        h('span', { class: 'amount' }, `${usd(spent)} / ${usd(limit)}`)),
      h('div', {
        class: 'bar', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.round(pct),
        'aria-label': t('budgets.spent_of', { pct: Math.round(pct) }),
      }, fill),
      h('p', { class: 'muted small' }, `${b.id} · ${t('budgets.spent_of', { pct: Math.round(pct) })}${b.open ? ` · ${t('budgets.open_hint')}` : ''}`),
      h('div', { class: 'actions', 'data-needs': 'admin' }, h('button', {
        class: 'ghost', onclick: () => {
          replace(panel, h('form', {
            class: 'editor', onsubmit: (e) => {
              e.preventDefault();
              const button = e.currentTarget.querySelector('button[type=submit]');
              busy(button, async () => {
                await post(`/api/v1/budgets/${encodeURIComponent(b.id)}/reset`, { reason: reason.value.trim() });
                toast(t('budgets.reset_done'));
                await load();
              }, (err) => { msg.textContent = errorText(err); msg.className = 'card-msg error'; });
            },
          },
          h('label', {}, t('budgets.reset_reason'), reason),
          h('div', { class: 'actions' },
            h('button', { type: 'submit', class: 'deny' }, t('budgets.reset_confirm')),
            h('button', { type: 'button', class: 'ghost', onclick: () => replace(panel) }, t('common.cancel')))));
          reason.focus();
        },
      }, t('budgets.reset'))),
      panel, msg);
  }

  const onEvent = (e) => { if (eventKind(e.detail) === 'budget') load(); };
  ctx.bus.addEventListener('event', onEvent);
  load();
  return () => ctx.bus.removeEventListener('event', onEvent);
}
