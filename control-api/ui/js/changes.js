// Semantic config changes (docs/config-safety.md): each changed path of an OpenClaw config with
// its group of meaning, its risk class, why that risk (the server's words) and the value before
// and after. Shown alike by the Config History tab (diff, drift, rollback plan) and the Backups
// page (import preview). Secret values never reach here: the gateway shows them redacted and an
// import preview masks them.

import { h } from './dom.js';
import { t } from './i18n.js';
import { riskBadge } from './components.js';

/** The groups in the order a reader scans them; a group the server adds later goes last. */
const GROUPS = ['tools_and_permissions', 'model', 'mcp', 'plugins', 'channels_and_bindings', 'skills', 'cron',
  'workspace_files', 'identity', 'other'];

/** A value shown compactly: absent, a scalar, or JSON (long JSON folds into a <details>). */
function value(v) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, t('changes.absent'));
  const text = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v, null, 1).replace(/\n\s*/g, ' ');
  if (text.length <= 120) return h('code', { class: 'val' }, text);
  return h('details', { class: 'val' }, h('summary', {}, t('changes.long', { n: text.length })),
    h('pre', { class: 'code' }, JSON.stringify(v, null, 2)));
}

/** One change: risk badge, path, why, before -> after. */
function row(c) {
  return h('li', { class: 'change', 'data-testid': 'change', 'data-path': c.path, 'data-risk': c.risk },
    h('div', { class: 'change-head' }, riskBadge(c.risk), h('code', { class: 'path' }, c.path)),
    c.why ? h('p', { class: 'muted small' }, c.why) : null,
    h('div', { class: 'before-after' },
      h('span', { class: 'muted small' }, t('changes.before')), value(c.before),
      h('span', { class: 'muted small' }, t('changes.after')), value(c.after)));
}

/**
 * Changes grouped by meaning, worst first within a group. `changes` is the API's flat list
 * (`{path, group, risk, why, before, after}`); `empty` is the text shown when there is none.
 */
export function changeGroups(changes, empty) {
  const list = changes || [];
  if (!list.length) return h('p', { class: 'muted', 'data-testid': 'no-changes' }, empty || t('changes.none'));
  const by = new Map();
  for (const c of list) {
    if (!by.has(c.group)) by.set(c.group, []);
    by.get(c.group).push(c);
  }
  const order = [...by.keys()].sort((a, b) => rank(a) - rank(b));
  const worst = ['critical', 'high', 'medium', 'low'];
  return h('div', { class: 'change-groups' }, order.map((g) => {
    const items = by.get(g).slice().sort((a, b) => worst.indexOf(a.risk) - worst.indexOf(b.risk));
    return h('section', { class: 'change-group', 'data-testid': 'change-group', 'data-group': g },
      h('h3', {}, t(`cgroup.${g}`, {}, g), ' ', h('span', { class: 'muted small' }, t('changes.count', { n: items.length }))),
      h('ul', { class: 'changes' }, items.map(row)));
  }));
}

function rank(g) {
  const i = GROUPS.indexOf(g);
  return i < 0 ? GROUPS.length : i;
}
