// The allow-always scope editor. A grant is as broad as its scope, so the editor starts from
// the server's `suggested_scope` (the narrowest scope covering this one request) and says in
// words, live, what the grant will let through as it is widened. Breadth follows the broker's
// rules (proxy/src/approvals/grants.rs): exact, pattern (a glob, or a tool with any
// arguments) or any (pattern "*" with any arguments, which the API makes us confirm).

import { h, select } from '../dom.js';
import { t } from '../i18n.js';
import { when } from '../format.js';

const EXPIRY = [['3600', '1h'], ['28800', '8h'], ['86400', '24h'], ['604800', '7d'], ['2592000', '30d'], ['0', 'never']];

const isGlob = (p) => /[*?[]/.test(p || '');
const onlyStars = (p) => !!p && /^\*+$/.test(p);

/** exact | pattern | any, as the broker computes it. */
export function breadthOf(kind, pattern, argPattern) {
  const argsAny = !argPattern || onlyStars(argPattern);
  const argsMatter = kind === 'tool_call' || kind === 'plugin';
  if (onlyStars(pattern) && argsAny) return 'any';
  if (isGlob(pattern) || (argPattern && isGlob(argPattern)) || (argsMatter && argsAny)) return 'pattern';
  return 'exact';
}

/** One sentence in the UI language: who may do what, with which arguments, until when. */
export function describeScope(s) {
  const breadth = s.breadth || breadthOf(s.kind, s.pattern, s.arg_pattern);
  const what = breadth === 'any'
    ? t(`scope.what_any_${s.kind}`, {}, t('scope.what_any_tool_call'))
    : t(`scope.what_${breadth === 'exact' ? 'exact' : 'glob'}_${s.kind}`, { pattern: s.pattern }, s.pattern);
  let args = '';
  if (s.kind !== 'model_call') {
    if (!s.arg_pattern) args = t('scope.args_any_clause');
    else args = t(isGlob(s.arg_pattern) ? 'scope.args_glob_clause' : 'scope.args_exact_clause', { args: s.arg_pattern });
  }
  const until = s.expires_at ? t('scope.until', { time: when(s.expires_at) }) : t('scope.until_revoked');
  return t('scope.sentence', { agent: s.agent, what, args, until });
}

/** A badge for a breadth. */
export function breadthBadge(breadth) {
  return h('span', { class: `badge breadth-${breadth}`, 'data-breadth': breadth }, t(`scope.breadth_${breadth}`));
}

/** Editor element; calls onConfirm(scopeInput, reason, button) or onCancel(). */
export function scopeEditor(a, { onConfirm, onCancel }) {
  const sug = a.suggested_scope || { pattern: '', arg_pattern: null };
  const pattern = h('input', { type: 'text', value: sug.pattern || '', 'data-testid': 'scope-pattern', autocapitalize: 'off', spellcheck: 'false' });
  const args = h('input', {
    type: 'text', value: sug.arg_pattern || '', placeholder: t('scope.args_any'), 'data-testid': 'scope-args',
    autocapitalize: 'off', spellcheck: 'false',
  });
  const expiry = select({ 'data-testid': 'scope-expiry' }, EXPIRY.map(([v, k]) => [v, t(`scope.exp_${k}`)]), '86400');
  const confirmAny = h('input', { type: 'checkbox', 'data-testid': 'scope-confirm-any' });
  const anyRow = h('label', { class: 'check' }, confirmAny, t('scope.confirm_any'));
  const reason = h('input', { type: 'text', placeholder: t('approvals.reason_placeholder') });
  const summary = h('p', { class: 'breadth', 'data-testid': 'scope-breadth', 'aria-live': 'polite' });
  const ok = h('button', { class: 'allow', 'data-testid': 'scope-confirm' }, t('scope.confirm'));

  function input() {
    const secs = Number(expiry.value);
    const body = { pattern: pattern.value.trim(), arg_pattern: args.value.trim() || null };
    if (secs) body.expires_in_s = secs;
    if (breadthOf(a.kind, body.pattern, body.arg_pattern) === 'any') body.confirm_any = confirmAny.checked;
    return body;
  }

  function update() {
    const s = input();
    const breadth = breadthOf(a.kind, s.pattern, s.arg_pattern);
    const preview = {
      agent: a.agent, kind: a.kind, pattern: s.pattern || '…', arg_pattern: s.arg_pattern, breadth,
      expires_at: s.expires_in_s ? new Date(Date.now() + s.expires_in_s * 1000).toISOString() : null,
    };
    const warnings = [];
    if (breadth === 'any') warnings.push(t('scope.warn_any'));
    else if (breadth === 'pattern') warnings.push(t('scope.warn_pattern'));
    if (!s.expires_in_s) warnings.push(t('scope.warn_forever'));
    summary.replaceChildren(breadthBadge(breadth), ' ', describeScope(preview),
      warnings.length ? h('span', { class: 'broad' }, warnings.join(' ')) : '');
    summary.classList.toggle('is-broad', breadth !== 'exact' || !s.expires_in_s);
    anyRow.hidden = breadth !== 'any';
    ok.disabled = !s.pattern || (breadth === 'any' && !confirmAny.checked);
  }

  for (const el of [pattern, args]) el.addEventListener('input', update);
  expiry.addEventListener('change', update);
  confirmAny.addEventListener('change', update);
  ok.addEventListener('click', () => onConfirm(input(), reason.value.trim(), ok));
  update();

  return h('div', { class: 'editor scope', 'data-testid': 'scope-editor' },
    h('h3', {}, t('scope.title')),
    h('p', { class: 'muted small' }, t('scope.agent_fixed', { agent: a.agent })),
    h('div', { class: 'grid2' },
      h('label', {}, t(`scope.pattern_${a.kind}`, {}, t('scope.pattern')), pattern),
      a.kind === 'model_call' ? null : h('label', {}, t(`scope.args_${a.kind}`, {}, t('scope.args')), args),
      h('label', {}, t('scope.expiry'), expiry)),
    summary, anyRow,
    h('label', {}, t('approvals.reason_optional'), reason),
    h('div', { class: 'actions' }, ok, h('button', { class: 'ghost', onclick: onCancel }, t('common.cancel'))));
}
