// Approvals inbox: pending requests arrive live, each shows exactly what is asked, and one
// tap decides it. Decisions carry the version the approver saw (expected_version), so a
// request that changed or was decided meanwhile is refused with 409 and shown as such.

import { h, replace, dl, select, pre } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, newKey } from '../api.js';
import { riskBadge, statusBadge, busy, toast, cardMsg, setMsg, errorText, errorBox } from '../components.js';
import { listPage } from '../listpage.js';
import { when, countdown, usd, subjectLine } from '../format.js';
import { scopeEditor } from './scope.js';

/** Held config changes (not calls): approved one by one, never by a grant. */
const CONFIG_CHANGES = ['config_rollback', 'config_import', 'config_change'];
const STATUSES = ['pending', 'allowed', 'denied', 'expired', 'cancelled', 'all'];

/** Body of POST /api/v1/approvals/{id}/decision. */
function decisionBody(a, decision, reason, scope) {
  const body = { decision, expected_version: a.version };
  if (reason) body.reason = reason;
  if (scope) body.scope = scope;
  return body;
}

/** Who decided, from a 409 problem (or a batch item's error) or an approval. */
function decidedBy(p) {
  return p.decided_by || (p.approval && p.approval.decided_by) || '';
}

export function mount(root, ctx) {
  let status = 'pending';
  const selected = new Set();

  const countEl = h('span', { class: 'count' });
  const batchEl = h('div', { class: 'batch', hidden: true, 'data-testid': 'batch' });
  // `#/approvals/<id>` (where a notification's action link leads): that approval first.
  const focusId = decodeURIComponent(location.hash.replace(/^#\/?/, '').split(/[/?]/)[1] || '');
  const focusEl = h('div', { class: 'focus', hidden: !focusId, 'data-testid': 'focus' });
  const filter = select({
    'aria-label': t('approvals.filter_status'), 'data-testid': 'status-filter',
    onchange: (e) => { status = e.target.value; selected.clear(); page.reload(); },
  }, STATUSES.map((s) => [s, t(`status.${s}`)]), status);

  const page = listPage(root, ctx, {
    title: t('approvals.title'), toolbar: [countEl, filter], above: [focusEl, batchEl], testid: 'approvals',
    path: '/api/v1/approvals', params: () => ({ status: status === 'all' ? '' : status }), limit: 100,
    key: (a) => a.id, version: (a) => `${a.version}:${a.status}`,
    // Pending: what expires first, first.
    order: (items) => (status === 'pending'
      ? [...items].sort((x, y) => String(x.expires_at).localeCompare(String(y.expires_at))) : items),
    empty: () => (status === 'pending'
      ? [t('approvals.empty'), t('approvals.empty_hint')] : [t('approvals.empty_filtered')]),
    events: ['approval', 'decision'], poll: 5000,
    item: card,
    onDraw: (items) => {
      const ids = new Set(items.filter((a) => a.status === 'pending').map((a) => a.id));
      for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
      countEl.textContent = items.length ? t('approvals.count', { n: items.length }) : '';
      drawBatch();
      refreshFocus();
      tick();
    },
  });

  let focusSeq = 0;
  /** Show the approval a link opened (any status), with its actions when still pending. */
  async function refreshFocus() {
    if (!focusId) return;
    const mine = ++focusSeq;
    try {
      const a = await get(`/api/v1/approvals/${encodeURIComponent(focusId)}`);
      if (mine !== focusSeq) return;
      const shown = focusEl.querySelector('[data-testid=approval]');
      if (shown && shown.dataset.version === `${a.version}:${a.status}` && shown.querySelector('.editor')) return;
      const el = card(a);
      el.dataset.version = `${a.version}:${a.status}`;
      replace(focusEl, h('h2', {}, t('approvals.focus_title')), el);
      tick();
    } catch (err) {
      if (mine === focusSeq) replace(focusEl, h('h2', {}, t('approvals.focus_title')), errorBox(err));
    }
  }

  function drawBatch() {
    batchEl.hidden = selected.size === 0;
    if (!selected.size) return;
    const msg = h('span', { class: 'batch-msg' });
    const run = (decision) => async (e) => {
      const byId = new Map(page.items().map((a) => [a.id, a]));
      const chosen = [...selected].map((id) => byId.get(id)).filter(Boolean);
      await busy(e.currentTarget, async () => {
        const res = await post('/api/v1/approvals/batch', {
          items: chosen.map((a) => ({ id: a.id, ...decisionBody(a, decision) })),
        }, { idempotencyKey: newKey() });
        const results = (res && res.items) || [];
        const failed = results.filter((r) => r.error);
        selected.clear();
        if (failed.length) {
          toast(() => t('approvals.batch_partial', { ok: results.length - failed.length, failed: failed.length }), 'error');
          for (const f of failed) {
            const el = page.element(f.id);
            if (el) showMsg(el, conflictText(f.error), 'error');
          }
        } else {
          toast(() => t('approvals.batch_done', { n: results.length }));
        }
        await page.reload();
      }, (err) => { msg.textContent = errorText(err); });
    };
    replace(batchEl,
      h('strong', {}, t('approvals.selected', { n: selected.size })),
      h('button', { class: 'allow', 'data-testid': 'batch-allow', 'data-needs': 'approver', onclick: run('allow-once') }, t('approvals.allow_once')),
      h('button', { class: 'deny', 'data-testid': 'batch-deny', 'data-needs': 'approver', onclick: run('deny') }, t('approvals.deny')),
      h('button', { class: 'ghost', onclick: () => { selected.clear(); drawBatch(); syncChecks(); } }, t('approvals.clear')),
      msg);
  }

  /** Checkboxes follow the selection (after "clear"). */
  function syncChecks() {
    for (const c of page.list.querySelectorAll('input.pick')) c.checked = selected.has(c.closest('[data-id]').dataset.id);
  }

  function conflictText(p) {
    const who = decidedBy(p || {});
    const detail = (p && p.detail) || '';
    return who ? `${t('approvals.conflict', { who })} ${detail}`.trim() : `${t('approvals.conflict_anon')} ${detail}`.trim();
  }

  function showMsg(el, text, kind) {
    const m = el.querySelector('.card-msg');
    if (m) setMsg(m, text, kind);
  }

  async function decide(a, el, decision, reason, scope, button) {
    await busy(button, async () => {
      await post(`/api/v1/approvals/${encodeURIComponent(a.id)}/decision`, decisionBody(a, decision, reason, scope),
        { idempotencyKey: newKey() });
      toast(() => t(`approvals.done_${decision.replace('-', '_')}`));
      await page.reload();
      refreshFocus();
    }, (err) => {
      if (err.status === 409) {
        showMsg(el, conflictText(err.problem), 'conflict');
        el.classList.add('stale');
        setTimeout(page.reload, 1500);
      } else {
        showMsg(el, errorText(err), 'error');
      }
    });
  }

  function card(a) {
    const pending = a.status === 'pending';
    const panel = h('div', { class: 'panel' });
    const el = h('article', { class: `card approval risk-edge-${a.risk || 'none'}`, 'data-id': a.id, 'data-testid': 'approval' });
    const check = pending ? h('input', {
      type: 'checkbox', class: 'pick', 'data-needs': 'approver', 'aria-label': t('approvals.select'), checked: selected.has(a.id),
      onchange: (e) => { if (e.target.checked) selected.add(a.id); else selected.delete(a.id); drawBatch(); },
    }) : null;
    const cost = a.cost_estimate_usd;
    const subject = a.subject || {};
    const actions = pending ? h('div', { class: 'actions', 'data-needs': 'approver' },
      h('button', { class: 'allow', 'data-testid': 'allow-once', onclick: (e) => decide(a, el, 'allow-once', '', null, e.currentTarget) }, t('approvals.allow_once')),
      // A config rollback or backup import is never granted: each critical one is approved on its own.
      CONFIG_CHANGES.includes(a.kind) ? null
        : h('button', { class: 'allow-alt', 'data-testid': 'allow-always', onclick: () => openAlways() }, t('approvals.allow_always')),
      h('button', { class: 'deny', 'data-testid': 'deny', onclick: () => openDeny() }, t('approvals.deny'))) : null;

    function openAlways() {
      replace(panel, scopeEditor(a, {
        onCancel: () => replace(panel),
        onConfirm: (scope, reason, button) => decide(a, el, 'allow-always', reason, scope, button),
      }));
    }
    function openDeny() {
      const reason = h('textarea', { rows: 2, placeholder: t('approvals.reason_placeholder'), 'data-testid': 'deny-reason' });
      replace(panel, h('div', { class: 'editor' },
        h('label', {}, t('approvals.deny_reason'), reason),
        h('div', { class: 'actions' },
          h('button', { class: 'deny', 'data-testid': 'deny-confirm', onclick: (e) => decide(a, el, 'deny', reason.value.trim(), null, e.currentTarget) }, t('approvals.deny_confirm')),
          h('button', { class: 'ghost', onclick: () => replace(panel) }, t('common.cancel')))));
      reason.focus();
    }

    return replace(el,
      h('div', { class: 'card-head' },
        check,
        riskBadge(a.risk),
        h('span', { class: 'kind' }, t(`kind.${a.kind}`, {}, a.kind)),
        h('span', { class: 'agent' }, a.agent ? (a.agent.startsWith('@') ? a.agent : `@${a.agent}`) : ''),
        h('span', { class: 'spacer' }),
        pending && a.expires_at
          ? h('span', { class: 'countdown', 'data-expires': a.expires_at, title: when(a.expires_at) })
          : statusBadge(a.status)),
      h('div', { class: 'subject', 'data-testid': 'subject' }, subjectLine(subject)),
      subject.prompt_summary ? h('p', { class: 'prompt' }, subject.prompt_summary) : null,
      // An MCP tool call is decided on its arguments: show them, as they will be sent.
      // A critical config rollback or backup import: the paths it changes (never their values).
      CONFIG_CHANGES.includes(a.kind) && Array.isArray(subject.critical_paths)
        ? h('ul', { class: 'critical-paths', 'data-testid': 'rollback-paths' }, subject.critical_paths.map((p) => h('li', {}, h('code', {}, p))))
        : null,
      a.kind === 'tool_call' && subject.args != null
        ? h('pre', { class: 'args', 'data-testid': 'tool-args' }, JSON.stringify(subject.args, null, 2))
        : null,
      a.reason ? h('p', { class: 'reason' }, a.reason) : null,
      (a.cautions || []).length ? h('ul', { class: 'cautions', 'data-testid': 'cautions' }, a.cautions.map(caution)) : null,
      dl([
        [t('field.rule'), a.rule ? h('code', {}, a.rule) : ''],
        [t('field.cost'), cost != null ? usd(cost) : t('common.unknown')],
        [t('field.cwd'), subject.cwd],
        [t('field.decided_by'), decidedBy(a)],
      ]),
      actions, panel,
      h('details', {}, h('summary', {}, t('approvals.full_request')),
        dl([
          [t('field.agent'), a.agent],
          [t('field.session'), a.session],
          [t('field.trace'), a.trace_id ? h('a', { href: `#/audit?trace=${encodeURIComponent(a.trace_id)}` }, a.trace_id) : ''],
          [t('field.created'), when(a.created_at)],
          [t('field.expires'), when(a.expires_at)],
          [t('field.id'), t('approvals.id_version', { id: a.id, version: a.version })],
        ]),
        pre(subject)),
      cardMsg({ 'data-testid': 'card-msg' }));
  }

  /** What may still refuse the call once approved (see docs/approvals.md). */
  function caution(c) {
    if (c.kind === 'budget') {
      return h('li', {}, t('approvals.caution_budget', { budget: c.budget, pct: Math.round(c.used_pct), cost: usd(c.needed_usd) }));
    }
    if (c.kind === 'upstream') {
      return h('li', {}, t('approvals.caution_upstream', { upstream: c.upstream, failed: c.failed, of: c.of_last }));
    }
    return h('li', {}, c.message || '');
  }

  function tick() {
    const now = Date.now();
    for (const el of [...focusEl.querySelectorAll('[data-expires]'), ...page.list.querySelectorAll('[data-expires]')]) {
      const left = (new Date(el.dataset.expires).getTime() - now) / 1000;
      el.textContent = left > 0 ? t('approvals.left', { time: countdown(left) }) : t('approvals.expiring');
      el.classList.toggle('urgent', left < 120);
    }
  }

  const timer = setInterval(tick, 1000);
  // In a fleet the inbox holds other sidecars' approvals too, which make no event on this
  // sidecar's stream: reload every 5 s.
  const fleetTimer = setInterval(() => { if (ctx.fleet) page.reload(); }, 5000);
  return () => { page.unmount(); clearInterval(timer); clearInterval(fleetTimer); };
}
