// Grants made by allow-always: each shown with its breadth in words, revocable.

import { h, replace, dl } from '../dom.js';
import { t } from '../i18n.js';
import { get, del, eventKind } from '../api.js';
import { errorBox, emptyState, loading, busy, toast, pageHead, errorText } from '../components.js';
import { when } from '../format.js';
import { describeScope, breadthBadge } from './scope.js';

export function mount(root, ctx) {
  const listEl = h('div', { class: 'list', 'data-testid': 'grants' });
  const moreEl = h('div', { class: 'more' });
  replace(root, pageHead(t('grants.title')), h('p', { class: 'muted' }, t('grants.hint')), listEl, moreEl);
  let items = [];
  let cursor = null;

  /** The first page, or (`more`) the next one after what is shown. */
  async function load(more) {
    if (!listEl.childElementCount) replace(listEl, loading());
    try {
      const page = await get(`/api/v1/grants${more && cursor ? `?cursor=${encodeURIComponent(cursor)}` : ''}`);
      items = more ? items.concat((page && page.items) || []) : (page && page.items) || [];
      cursor = (page && page.next_cursor) || null;
      replace(listEl, items.length ? items.map(card) : emptyState(t('grants.empty'), t('grants.empty_hint')));
      replace(moreEl, cursor
        ? h('button', { class: 'ghost', 'data-testid': 'grants-more', onclick: () => load(true) }, t('common.load_more'))
        : null);
    } catch (err) {
      replace(listEl, errorBox(err));
    }
  }

  function card(g) {
    const msg = h('div', { class: 'card-msg', role: 'status' });
    const expired = g.expired || (g.expires_at && new Date(g.expires_at).getTime() <= Date.now());
    const confirm = h('div', { class: 'panel' });
    return h('article', { class: `card grant${expired ? ' muted-card' : ''}`, 'data-testid': 'grant', 'data-id': g.id },
      h('div', { class: 'card-head' },
        breadthBadge(g.breadth || 'exact'),
        h('span', { class: 'kind' }, t(`kind.${g.kind}`, {}, g.kind || '')),
        h('span', { class: 'agent' }, `@${g.agent}`),
        expired ? h('span', { class: 'badge st-expired' }, t('status.expired')) : null),
      h('p', { class: 'breadth' }, describeScope(g)),
      dl([
        [t('scope.pattern'), h('code', {}, g.pattern)],
        [t('scope.args'), g.kind === 'model_call' ? '' : g.arg_pattern ? h('code', {}, g.arg_pattern) : t('scope.args_any')],
        [t('field.expires'), g.expires_at ? when(g.expires_at) : t('scope.until_revoked')],
        [t('field.created'), when(g.created_at)],
        [t('field.created_by'), g.created_by],
        [t('field.approval'), g.approval_id],
        [t('field.id'), g.id],
      ]),
      h('div', { class: 'actions' },
        h('button', { class: 'deny', 'data-testid': 'revoke', 'data-needs': 'approver', onclick: () => replace(confirm,
          h('div', { class: 'editor' },
            h('p', {}, t('grants.revoke_confirm')),
            h('div', { class: 'actions' },
              h('button', { class: 'deny', 'data-testid': 'revoke-confirm', onclick: (e) => revoke(g, e.currentTarget, msg) }, t('grants.revoke')),
              h('button', { class: 'ghost', onclick: () => replace(confirm) }, t('common.cancel'))))) }, t('grants.revoke'))),
      confirm, msg);
  }

  async function revoke(g, button, msg) {
    await busy(button, async () => {
      await del(`/api/v1/grants/${encodeURIComponent(g.id)}`);
      toast(t('grants.revoked'));
      await load();
    }, (err) => { msg.textContent = errorText(err); msg.className = 'card-msg error'; });
  }

  const onEvent = (e) => { if (eventKind(e.detail) === 'grant') load(); };
  ctx.bus.addEventListener('event', onEvent);
  load();
  return () => ctx.bus.removeEventListener('event', onEvent);
}
