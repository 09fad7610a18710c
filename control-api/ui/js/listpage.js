// The list page skeleton. Every page that shows what a `GET` route returns as
// `{items, next_cursor}` is built with it, so all lists look and behave alike: heading and
// toolbar, optional filters, cards or a table, loading / empty / error states, "load more"
// paging, and live refresh from the event bus. A view is then mostly its item renderer:
//
//   export function mount(root, ctx) {
//     return listPage(root, ctx, {
//       title: t('grants.title'), path: '/api/v1/grants', events: ['grant'],
//       empty: [t('grants.empty'), t('grants.empty_hint')],
//       item: (g, page) => h('article', { class: 'card' }, g.pattern),
//     }).unmount;
//   }
//
// Options (only title, path and item are required). Text is passed translated, t('key'),
// never literal, so the i18n check sees every key:
//   title, hint      heading, and a muted line under it
//   toolbar          elements right of the heading (a status <select>, a count)
//   above            elements between the heading and the list (a batch bar, a detail panel)
//   filters          a <form>; submitting it reloads from the first page
//   path, params()   the route, and the query (filters) for each load; `cursor` is added
//   limit            page size, sent as `limit`
//   testid           data-testid of the list element
//   item(x, page)    one item: a card (`article.card`), or a <tr> when `columns` is given
//   columns          headings of a table; each <td> gets its column's heading for phones
//   key(x)           identity: pages merge without doubles, element(key) finds an item's
//                    element, and a refresh keeps an element whose `.editor` is open
//   version(x)       revision (with key): an element is kept exactly while its item's
//                    version is unchanged (an open editor goes when the item changed)
//   order(items)     the items in display order (default: as the server sent them)
//   empty            [title, hint?], or a function returning it (it may depend on filters)
//   events           event kinds (api.js eventKind) that reload the list; reconnecting does too
//   poll             ms: also reload this often while the live stream is down
//   refresh          ms: reload this often in any case (state that makes no audit events)
//   onDraw(items)    after every draw and every failed load (counts, selections, timers)
// Returns the page: { reload(), items(), element(key), list, unmount() }.

import { h, replace } from './dom.js';
import { t } from './i18n.js';
import { get, query, eventKind } from './api.js';
import { errorBox, emptyState, loading, busy, pageHead } from './components.js';

/** Build a list page into `root` (see the module comment). */
export function listPage(root, ctx, o) {
  const list = h('div', { class: o.columns ? 'list list-table' : 'list', 'data-testid': o.testid });
  const more = h('div', { class: 'more' });
  let items = [];
  let cursor = null;
  let seq = 0;
  let drawn = false;
  let shown = new Map();
  let debounce = null;
  const timers = [];

  if (o.filters) {
    o.filters.addEventListener('submit', (e) => {
      e.preventDefault();
      const button = o.filters.querySelector('button[type=submit]');
      if (button) busy(button, () => load(false)); else load(false);
    });
  }
  replace(root,
    pageHead(o.title, o.toolbar || []),
    o.hint ? h('p', { class: 'muted' }, o.hint) : null,
    o.above || [], o.filters || null, list, more);

  const keyOf = (x) => (o.key ? String(o.key(x)) : null);

  /** The first page (`append` false) or the next one after what is shown. */
  async function load(append) {
    const mine = ++seq;
    if (!drawn) replace(list, loading()); // first load only: a refresh never blanks the list
    try {
      const params = { ...(o.params ? o.params() : {}), limit: o.limit, cursor: append ? cursor : '' };
      const res = await get(`${o.path}${query(params)}`);
      if (mine !== seq) return;
      const fresh = (res && res.items) || [];
      items = append ? merge(items, fresh) : fresh;
      cursor = (res && res.next_cursor) || null;
      draw();
    } catch (err) {
      if (mine !== seq) return;
      drawn = true;
      items = [];
      cursor = null;
      shown = new Map();
      replace(list, errorBox(err));
      replace(more);
      if (o.onDraw) o.onDraw(items);
    }
  }

  /** Older pages plus a newer one, without showing an item twice. */
  function merge(old, fresh) {
    if (!o.key) return old.concat(fresh);
    const byKey = new Map(old.map((x) => [keyOf(x), x]));
    for (const x of fresh) byKey.set(keyOf(x), x);
    return [...byKey.values()];
  }

  function render(x) {
    const el = o.item(x, page);
    if (o.columns && el) {
      [...el.children].forEach((td, i) => { if (o.columns[i] && !td.dataset.label) td.dataset.label = o.columns[i]; });
    }
    return el;
  }

  function draw() {
    const next = new Map();
    const nodes = (o.order ? o.order(items) : items).map((x) => {
      const k = keyOf(x);
      const v = o.version ? String(o.version(x)) : null;
      const old = k === null ? undefined : shown.get(k);
      // Same version: nothing to redraw. No version: redraw, unless an editor is open in it.
      const keep = old && (v !== null ? old.version === v : !!old.el.querySelector('.editor'));
      const entry = keep ? old : { version: v, el: render(x) };
      if (k !== null) next.set(k, entry);
      return entry.el;
    });
    shown = next;
    drawn = true;
    if (!nodes.length) {
      const [title, hint] = typeof o.empty === 'function' ? o.empty() : o.empty || [t('common.empty')];
      const empty = emptyState(title, hint);
      // The same empty state stays the same element (a refresh does not flicker it).
      const now = list.firstElementChild;
      if (!(list.childElementCount === 1 && now.matches('.state.empty') && now.textContent === empty.textContent)) {
        replace(list, empty);
      }
    } else if (o.columns) {
      replace(list, h('div', { class: 'table-wrap' }, h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, o.columns.map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, nodes))));
    } else {
      replace(list, nodes);
    }
    replace(more, cursor
      ? h('button', { class: 'ghost', 'data-testid': 'load-more', onclick: (e) => busy(e.currentTarget, () => load(true)) }, t('common.load_more'))
      : null);
    if (o.onDraw) o.onDraw(items);
  }

  const reloadSoon = () => { clearTimeout(debounce); debounce = setTimeout(() => load(false), 60); };
  const onEvent = (e) => { if (o.events && o.events.includes(eventKind(e.detail))) reloadSoon(); };
  const onLive = (e) => { if (o.events && e.detail === 'live') reloadSoon(); };
  ctx.bus.addEventListener('event', onEvent);
  ctx.bus.addEventListener('live', onLive);
  if (o.poll) timers.push(setInterval(() => { if (ctx.live() !== 'live') load(false); }, o.poll));
  if (o.refresh) timers.push(setInterval(() => load(false), o.refresh));

  const page = {
    /** Load the first page again (after an action, or when a filter changed). */
    reload: () => load(false),
    /** The items loaded so far, in server order. */
    items: () => items,
    /** The element shown for the item with this key (needs `key`), or undefined. */
    element: (k) => shown.get(String(k))?.el,
    list,
    unmount() {
      seq += 1; // answers still on their way are dropped
      ctx.bus.removeEventListener('event', onEvent);
      ctx.bus.removeEventListener('live', onLive);
      clearTimeout(debounce);
      timers.forEach(clearInterval);
    },
  };
  load(false);
  return page;
}
