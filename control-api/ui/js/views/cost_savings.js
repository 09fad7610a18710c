// Savings suggestions on the Cost page (GET /api/v1/cost/suggestions): per agent and task
// type, the model it spends most on, the cheaper models of the same family priced on the same
// tokens (an SVG bar each, beside the current cost), the evidence and the verdict, explained
// here from the numbers and the API's thresholds (so it reads in every language). "Preview"
// asks for the dry-run config change (GET /api/v1/cost/suggestions/preview): nothing is
// ever applied from this page.

import { h, pre, replace } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, query } from '../api.js';
import { confirmIn, emptyState, errorBox, loading, setMsg } from '../components.js';
import { usd } from '../format.js';

const NS = 'http://www.w3.org/2000/svg';
const VERDICT_CLASS = { good_candidate: 'risk-low', review: 'risk-medium', risky: 'risk-high', not_enough_data: 'st-pending' };

function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

const pct = (x) => (x == null ? '–' : `${Math.round(x * 100)}%`);

/** The verdict's reasons, rebuilt from the evidence and the thresholds the API used. */
function reasons(it, d) {
  const e = it.evidence;
  if (it.verdict === 'not_enough_data') return [t('cost.sg_reason_data', { calls: e.calls, min: d.min_evidence_calls })];
  const out = [];
  if ((e.tool_use_share || 0) > d.max_tool_use_share) {
    out.push(t('cost.sg_reason_tools', { pct: pct(e.tool_use_share), max: pct(d.max_tool_use_share) }));
  }
  if ((e.error_rate || 0) > d.max_error_rate) out.push(t('cost.sg_reason_errors', { pct: pct(e.error_rate), max: pct(d.max_error_rate) }));
  if ((e.retry_rate || 0) > d.max_retry_rate) {
    out.push(t('cost.sg_reason_retries', { pct: pct(e.retry_rate), s: d.retry_window_s, max: pct(d.max_retry_rate) }));
  }
  if (it.verdict === 'good_candidate') out.push(t('cost.sg_reason_short', { pct: pct(e.short_share), n: d.short_output_tokens }));
  if (it.verdict === 'review') {
    out.push(t('cost.sg_reason_long', { pct: pct(e.short_share), n: d.short_output_tokens, min: pct(d.min_short_share) }));
  }
  return out;
}

/** Current cost and each candidate's, as bars on one scale. */
function compare(it) {
  const rows = [{ model: it.model, cost: it.priced_usd, cls: 'series-1' }, ...it.candidates.map((c) => ({ model: c.model, cost: c.cost_usd, cls: 'series-0' }))];
  const max = Math.max(...rows.map((r) => r.cost), 1e-12);
  const rowH = 24; const W = 320;
  const svg = s('svg', { viewBox: `0 0 ${W} ${rows.length * rowH}`, class: 'chart bars', role: 'img', 'aria-label': t('cost.sg_compare') });
  rows.forEach((r, i) => {
    const w = Math.max(1, W * 0.45 * (r.cost / max));
    svg.append(
      s('text', { x: 0, y: i * rowH + 16, class: 'bar-label' }, r.model.length > 18 ? `${r.model.slice(0, 17)}…` : r.model),
      s('rect', { x: W * 0.33, y: i * rowH + 4, width: w, height: rowH - 8, class: r.cls, 'data-model': r.model, 'data-cost-usd': r.cost }),
      s('text', { x: W * 0.33 + w + 4, y: i * rowH + 16, class: 'bar-value' }, usd(r.cost)));
  });
  return svg;
}

// Apply (admins): confirm, then POST .../apply with the preview's base hash, so a config
// changed since the preview is a 409 (shown) and never overwritten.
function applyControls(it, c, p) {
  const panel = h('div', {});
  const msg = h('p', { class: 'small', 'data-testid': 'suggestion-apply-msg', role: 'status' });
  const open = h('button', { type: 'button', class: 'ghost', 'data-needs': 'admin', 'data-testid': 'suggestion-apply' }, t('cost.sg_apply'));
  open.addEventListener('click', () => confirmIn(panel, msg, {
    text: t('cost.sg_apply_confirm', { before: p.model_ref_before, after: p.model_ref_after }),
    confirm: t('cost.sg_apply_now'), kind: 'allow', testid: 'suggestion-apply-confirm',
    onConfirm: async () => {
      const r = await post('/api/v1/cost/suggestions/apply', { agent: it.agent, model: c.model, base_hash: p.base_hash, confirm: true });
      open.disabled = true;
      // A change that touches ClawButler's wiring waits in the inbox (202): say so, never "applied".
      if (r.status === 'awaiting_approval') {
        const paths = ((r.approval && r.approval.subject && r.approval.subject.critical_paths) || []).join(', ');
        setMsg(msg, t('cost.sg_held', { paths, id: r.approval_id }));
        return;
      }
      setMsg(msg, t('cost.sg_applied', { agent: it.agent, after: p.model_ref_after, version: (r.result && r.result.new_version) ?? '' }), 'ok');
    },
  }));
  return h('div', { class: 'actions' }, open, panel, msg);
}

function candidate(it, c) {
  const out = h('div', { class: 'sg-preview', 'data-testid': 'suggestion-preview-out' });
  const button = h('button', {
    type: 'button', class: 'ghost', 'data-testid': 'suggestion-preview', 'data-model': c.model,
    onclick: async () => {
      replace(out, loading());
      try {
        const p = await get(`/api/v1/cost/suggestions/preview${query({ agent: it.agent, model: c.model })}`);
        replace(out, h('p', { class: 'small' }, t('cost.sg_dry_run', { before: p.model_ref_before, after: p.model_ref_after, version: p.from_version })),
          pre(p.patch), p.notes.map((n) => h('p', { class: 'muted small' }, n)), applyControls(it, c, p));
      } catch (err) {
        replace(out, errorBox(err));
      }
    },
  }, t('cost.sg_preview'));
  return h('li', { 'data-testid': 'suggestion-candidate', 'data-model': c.model, 'data-saving-usd': c.saving_usd },
    h('span', {}, t('cost.sg_candidate', { model: c.model, cost: usd(c.cost_usd), saving: usd(c.saving_usd), pct: `${c.saving_pct.toFixed(1)}%` })),
    ' ', button, out);
}

function item(it, d) {
  const e = it.evidence;
  return h('li', { class: 'suggestion', 'data-testid': 'suggestion', 'data-agent': it.agent, 'data-verdict': it.verdict },
    h('div', { class: 'card-head' },
      h('span', { class: `badge ${VERDICT_CLASS[it.verdict] || ''}` }, t(`cost.sg_verdict_${it.verdict}`)),
      h('strong', {}, it.agent),
      h('span', {}, t('cost.sg_line', { task: it.task, model: it.model, cost: usd(it.cost_usd), calls: it.calls }))),
    compare(it),
    h('ul', { class: 'sg-candidates' }, it.candidates.map((c) => candidate(it, c))),
    h('p', { class: 'muted small', 'data-testid': 'suggestion-evidence' }, t('cost.sg_evidence', {
      short: pct(e.short_share), free: pct(e.tool_free_share), tools: pct(e.tool_use_share),
      errors: pct(e.error_rate), retries: pct(e.retry_rate), calls: e.calls,
    })),
    h('ul', { class: 'sg-reasons', 'data-testid': 'suggestion-reasons' }, reasons(it, d).map((r) => h('li', {}, r))));
}

/** The Suggestions card for a range (`7d`, ...); it fills itself when the answer comes. */
export function savingsSection(range) {
  const body = h('div', {}, loading());
  const card = h('section', { class: 'card', 'data-testid': 'cost-suggestions' }, h('h2', {}, t('cost.suggestions')),
    h('p', { class: 'muted small' }, t('cost.sg_intro')), body);
  get(`/api/v1/cost/suggestions${query({ since: range })}`).then((v) => {
    const none = v.no_suggestion.length
      ? h('details', {}, h('summary', {}, t('cost.sg_none', { n: v.no_suggestion.length })),
        h('ul', {}, v.no_suggestion.map((n) => h('li', { 'data-testid': 'no-suggestion' }, t('cost.sg_none_line', { agent: n.agent, task: n.task, model: n.model })))))
      : null;
    if (!v.items.length) replace(body, emptyState(t('cost.sg_empty'), t('cost.sg_empty_hint')), none);
    else replace(body, h('ul', { class: 'suggestions' }, v.items.map((it) => item(it, v.definitions))), none);
  }).catch((err) => replace(body, errorBox(err)));
  return card;
}
