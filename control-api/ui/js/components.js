// Shared pieces: error and empty states, badges, busy buttons, toasts, card messages and
// confirmations. Every string shown comes from i18n.js (callers pass keys' translations).

import { h, replace } from './dom.js';
import { t } from './i18n.js';

/** The headline of a failed request: the HTTP status in the UI language, else the problem's title. */
export function errorTitle(err) {
  const fallback = (err && err.title) || t('err.generic');
  return err && err.status ? t(`http.${err.status}`, {}, fallback) : fallback;
}

/** What the server (or the browser) said about a failure, '' if nothing beyond the headline. */
function detailOf(err) {
  if (!err) return '';
  return ('detail' in err ? err.detail : err.message) || '';
}

/** A failed request in one line: headline (status): the server's own detail. */
export function errorText(err) {
  const status = err && err.status ? ` (${err.status})` : '';
  const detail = detailOf(err);
  return detail ? t('err.line', { title: errorTitle(err) + status, detail }) : errorTitle(err) + status;
}

/** An error panel: the headline and the server's `detail`. */
export function errorBox(err) {
  const status = err && err.status ? ` (${err.status})` : '';
  return h('div', { class: 'state error', role: 'alert', 'data-testid': 'error' },
    h('strong', {}, errorTitle(err) + status),
    detailOf(err) ? h('p', {}, detailOf(err)) : null);
}

/** An empty list: a headline and what to do about it. */
export function emptyState(title, hint) {
  return h('div', { class: 'state empty', 'data-testid': 'empty' }, h('strong', {}, title), hint ? h('p', {}, hint) : null);
}

/** Loading placeholder. */
export function loading() {
  return h('div', { class: 'state loading', 'aria-busy': 'true' }, t('common.loading'));
}

/** A coloured risk badge (low, medium, high, critical). */
export function riskBadge(risk) {
  if (!risk) return null;
  return h('span', { class: `badge risk-${risk}`, 'data-risk': risk }, t(`risk.${risk}`));
}

/** A badge for an action or status (allow, deny, hold, pending, ...). */
export function statusBadge(value) {
  if (!value) return null;
  return h('span', { class: `badge st-${value}` }, t(`status.${value}`, {}, value));
}

/** Run `fn` with the button disabled and marked busy; errors go to `onError`. */
export async function busy(button, fn, onError) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await fn();
  } catch (e) {
    if (onError) onError(e); else throw e;
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}

let toastHost = null;
/** The toasts on screen, each with the function that says it in the current language. */
const toasts = new Map();

/**
 * A short message at the bottom of the screen ('ok' or 'error'). `say` is a function,
 * `() => t('key', vars)`: a toast outlives the page that raised it, and if the language is
 * switched while it shows, `retranslateToasts()` says it again in the new one.
 */
export function toast(say, kind = 'ok') {
  if (!toastHost) {
    toastHost = h('div', { class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(toastHost);
  }
  const el = h('div', { class: `toast ${kind}` }, say());
  toasts.set(el, say);
  toastHost.append(el);
  setTimeout(() => { el.remove(); toasts.delete(el); }, kind === 'error' ? 8000 : 4000);
}

/** Say the toasts on screen again, in the language now chosen. */
export function retranslateToasts() {
  for (const [el, say] of toasts) el.textContent = say();
}

/** A message line under a card's actions (filled by `setMsg`). */
export function cardMsg(props) {
  return h('div', { class: 'card-msg', role: 'status', ...props });
}

/** Show `text` in a `cardMsg` ('error', 'conflict' or '' for plain); empty text hides it. */
export function setMsg(el, text, kind = '') {
  el.textContent = text;
  el.className = kind ? `card-msg ${kind}` : 'card-msg';
}

/**
 * Ask before acting, inside `panel` (an empty element under a card's actions): a sentence,
 * an optional reason field, a confirm and a cancel button. `onConfirm(reason)` runs with the
 * confirm button busy; when it succeeds the panel closes and `then()` runs (a list's
 * `page.reload`, which redraws the card now that no editor is open in it); a failure is
 * shown in `msg` (a `cardMsg`) and the panel stays. Strings are already translated: `text`,
 * `label` (the reason field; omit for none) and `confirm`.
 */
export function confirmIn(panel, msg, { text, label, required = true, confirm, kind = 'deny', testid, onConfirm, then }) {
  const reason = label ? h('input', { type: 'text', required, placeholder: label }) : null;
  const ok = h('button', { type: 'submit', class: kind, 'data-testid': testid }, confirm);
  replace(panel, h('form', {
    class: 'editor',
    onsubmit: (e) => {
      e.preventDefault();
      setMsg(msg, '');
      busy(ok, async () => {
        await onConfirm(reason ? reason.value.trim() : '');
        replace(panel);
        if (then) await then();
      }, (err) => setMsg(msg, errorText(err), 'error'));
    },
  },
  text ? h('p', {}, text) : null,
  reason ? h('label', {}, label, reason) : null,
  h('div', { class: 'actions' }, ok,
    h('button', { type: 'button', class: 'ghost', onclick: () => replace(panel) }, t('common.cancel')))));
  (reason || ok).focus();
}

/** A page heading with optional actions on the right. */
export function pageHead(title, ...actions) {
  return h('div', { class: 'page-head' }, h('h1', {}, title), h('div', { class: 'actions' }, actions));
}
