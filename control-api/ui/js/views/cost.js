// Cost: where the money goes, from the sidecar's own metering (GET /api/v1/cost) and the
// anomalies raised against each agent's and model's baseline (GET /api/v1/cost/anomalies).
// Charts are SVG drawn here by hand: spend over time stacked by agent or model (anomalies
// marked on it), and the top agents and models. An anomaly lists its top contributors down
// to the traces, each a link to the audit trace view.

import { h, replace, select } from '../dom.js';
import { t } from '../i18n.js';
import { get, query } from '../api.js';
import { errorBox, emptyState, loading, pageHead } from '../components.js';
import { usd, when } from '../format.js';
import { crossCheck } from './costcheck.js';
import { savingsSection } from './cost_savings.js';

const NS = 'http://www.w3.org/2000/svg';
/** Colours for stacked series (style.css: .series-0 ... .series-7); the 8th is "other". */
const SERIES = 8;
const RANGES = { '24h': 'hour', '7d': 'day', '30d': 'day', '90d': 'day' };

/** An SVG element; attributes only (no text from data is ever markup). */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v != null) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

const state = { range: '7d', stack: 'agent' };

export function mount(root, ctx) {
  let alive = true;
  const body = h('div', { class: 'cost', 'data-testid': 'cost' });
  const rangeSel = select({ 'aria-label': t('cost.range'), 'data-testid': 'cost-range', onchange: (e) => { state.range = e.target.value; load(); } },
    Object.keys(RANGES).map((r) => [r, t(`cost.range_${r}`)]), state.range);
  const stackSel = select({ 'aria-label': t('cost.stack'), 'data-testid': 'cost-stack', onchange: (e) => { state.stack = e.target.value; load(); } },
    [['agent', t('cost.by_agent')], ['model', t('cost.by_model')]], state.stack);
  replace(root, pageHead(t('cost.title'), rangeSel, stackSel), body);

  async function load() {
    replace(body, loading());
    const by = RANGES[state.range];
    try {
      const [periods, series, agents, models, anomalies] = await Promise.all([
        get(`/api/v1/cost${query({ by, since: state.range })}`),
        get(`/api/v1/cost${query({ by, split: state.stack, since: state.range })}`),
        get(`/api/v1/cost${query({ by: 'agent', since: state.range, limit: 10 })}`),
        get(`/api/v1/cost${query({ by: 'model', since: state.range, limit: 10 })}`),
        get(`/api/v1/cost/anomalies${query({ since: state.range })}`),
      ]);
      if (!alive) return;
      replace(body,
        totals(periods.totals),
        h('section', { class: 'card' }, h('h2', {}, t('cost.over_time')), timeline(periods, series, anomalies.items, by)),
        h('div', { class: 'cost-tops' },
          h('section', { class: 'card' }, h('h2', {}, t('cost.top_agents')), bars(agents.rows, 'cost-top-agents')),
          h('section', { class: 'card' }, h('h2', {}, t('cost.top_models')), bars(models.rows, 'cost-top-models'))),
        h('section', { class: 'card' }, h('h2', {}, t('cost.anomalies')), anomalyList(anomalies.items)),
        savingsSection(state.range),
        crossCheck(state.range));
    } catch (err) {
      if (alive) replace(body, errorBox(err));
    }
  }

  const onEvent = (e) => {
    const d = e.detail && e.detail.data;
    if (d && d.kind === 'cost') load();
  };
  ctx.bus.addEventListener('event', onEvent);
  load();
  return () => { alive = false; ctx.bus.removeEventListener('event', onEvent); };
}

function totals(tot) {
  const fig = (label, value, id) => h('div', { class: 'figure' }, h('span', { class: 'muted small' }, label),
    h('strong', { 'data-testid': id }, value));
  return h('section', { class: 'card cost-totals' },
    fig(t('cost.spend'), usd(tot.cost_usd), 'cost-total'),
    fig(t('cost.calls'), String(tot.calls), 'cost-calls'),
    fig(t('cost.per_call'), tot.avg_cost_per_call_usd == null ? '–' : usd(tot.avg_cost_per_call_usd), 'cost-per-call'),
    fig(t('cost.per_1k'), tot.cost_per_1k_tokens_usd == null ? '–' : usd(tot.cost_per_1k_tokens_usd), 'cost-per-1k'),
    fig(t('cost.errors'), String(tot.errors), 'cost-errors'));
}

/** The period an anomaly's hour falls in, labelled like the API's rows. */
function periodOf(hourIso, by) {
  const d = hourIso.slice(0, 10);
  return by === 'hour' ? `${d}T${hourIso.slice(11, 13)}:00Z` : d;
}

function timeline(periods, series, anomalies, by) {
  const keys = periods.rows.map((r) => r.key);
  if (!periods.totals.calls) return emptyState(t('cost.empty'), t('cost.empty_hint'));
  // Series: the most expensive stacks get a colour each, the rest share the last one.
  const spendBy = new Map();
  for (const r of series.rows) spendBy.set(r.split, (spendBy.get(r.split) || 0) + r.cost_nano);
  const names = [...spendBy.entries()].sort((a, b) => b[1] - a[1]).map(([n]) => n);
  const colour = (n) => Math.min(names.indexOf(n), SERIES - 1);
  const W = 640; const H = 220; const left = 48; const bottom = 24; const top = 14;
  const max = Math.max(...periods.rows.map((r) => r.cost_nano), 1);
  const bw = (W - left) / Math.max(keys.length, 1);
  const y = (nano) => (H - bottom - top) * (nano / max);
  const g = s('g', {});
  const stackTop = new Map();
  for (const r of series.rows) {
    const i = keys.indexOf(r.key);
    if (i < 0 || !r.cost_nano) continue;
    const base = stackTop.get(r.key) || 0;
    const hgt = y(r.cost_nano);
    stackTop.set(r.key, base + hgt);
    g.append(s('rect', {
      x: left + i * bw + 1, y: H - bottom - base - hgt, width: Math.max(bw - 2, 1), height: hgt,
      class: `series-${colour(r.split)}`, 'data-key': r.key, 'data-split': r.split, 'data-cost-nano': r.cost_nano,
    }, s('title', {}, `${r.key} · ${r.split} · ${usd(r.cost_usd)}`)));
  }
  const marks = s('g', { class: 'anomaly-marks' });
  for (const a of anomalies) {
    const i = keys.indexOf(periodOf(a.hour, by));
    if (i < 0) continue;
    const cx = left + i * bw + bw / 2;
    marks.append(s('path', { d: `M${cx - 6} 2 L${cx + 6} 2 L${cx} 12 Z`, class: 'anomaly-mark', 'data-testid': 'anomaly-mark' },
      s('title', {}, t('cost.anomaly_line', { subject: a.subject, metric: t(`cost.metric_${a.metric}`), hour: when(a.hour) }))));
  }
  const axis = s('g', { class: 'axis' },
    s('line', { x1: left, y1: H - bottom, x2: W, y2: H - bottom }),
    s('text', { x: left - 4, y: top + 4, 'text-anchor': 'end' }, usd(max / 1e9)),
    s('text', { x: left - 4, y: H - bottom, 'text-anchor': 'end' }, usd(0)));
  const step = Math.max(1, Math.ceil(keys.length / 8));
  keys.forEach((k, i) => {
    if (i % step) return;
    axis.append(s('text', { x: left + i * bw + bw / 2, y: H - 6, 'text-anchor': 'middle' }, by === 'hour' ? k.slice(11, 16) : k.slice(5)));
  });
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': t('cost.over_time'), 'data-testid': 'cost-chart' }, axis, g, marks);
  const legend = h('ul', { class: 'legend' }, names.slice(0, SERIES).map((n, i) => h('li', {},
    h('span', { class: `swatch series-${i}` }), i === SERIES - 1 && names.length > SERIES ? t('cost.others') : n)));
  return h('div', { class: 'chart-wrap' }, svg, legend);
}

function bars(rows, testid) {
  const shown = rows.filter((r) => r.cost_nano > 0 || r.calls > 0);
  if (!shown.length) return emptyState(t('cost.empty'));
  const max = Math.max(...shown.map((r) => r.cost_nano), 1);
  const rowH = 26; const W = 320;
  const svg = s('svg', { viewBox: `0 0 ${W} ${shown.length * rowH}`, class: 'chart bars', role: 'img', 'aria-label': t('cost.spend'), 'data-testid': testid });
  shown.forEach((r, i) => {
    const w = Math.max(1, (W * 0.55) * (r.cost_nano / max));
    svg.append(
      s('text', { x: 0, y: i * rowH + 17, class: 'bar-label' }, r.key.length > 18 ? `${r.key.slice(0, 17)}…` : r.key),
      s('rect', { x: W * 0.33, y: i * rowH + 5, width: w, height: rowH - 10, class: 'series-0', 'data-key': r.key, 'data-cost-nano': r.cost_nano }),
      s('text', { x: W * 0.33 + w + 4, y: i * rowH + 17, class: 'bar-value' }, usd(r.cost_usd)));
  });
  return svg;
}

function traceItem(tr) {
  return h('li', {},
    h('a', { href: `#/audit?trace=${encodeURIComponent(tr.trace_id)}`, 'data-testid': 'anomaly-trace' }, tr.trace_id),
    h('span', { class: 'muted' }, ` ${usd(tr.cost_usd)}`));
}

function modelItem(m) {
  return h('li', {},
    h('span', {}, t('cost.model_line', { model: m.model, cost: usd(m.cost_usd), calls: m.calls })),
    h('ul', {}, m.traces.map(traceItem)));
}

function agentItem(ag) {
  return h('li', {},
    h('span', {}, t('cost.agent_line', { agent: ag.agent, cost: usd(ag.cost_usd), calls: ag.calls })),
    h('ul', {}, ag.models.map(modelItem)));
}

function anomalyItem(a) {
  const fmt = (v) => (a.metric === 'spend' ? usd(v) : String(v));
  return h('li', { class: 'anomaly', 'data-testid': 'anomaly' },
    h('div', { class: 'card-head' },
      h('span', { class: 'badge risk-medium' }, t(`cost.scope_${a.scope}`)),
      h('strong', {}, a.subject),
      h('span', {}, t('cost.anomaly_value', { metric: t(`cost.metric_${a.metric}`), value: fmt(a.value), median: fmt(a.baseline_median) })),
      h('span', { class: 'muted small' }, when(a.hour))),
    h('ul', { class: 'contributors' }, a.top.map(agentItem)));
}

function anomalyList(items) {
  if (!items.length) return emptyState(t('cost.no_anomalies'), t('cost.no_anomalies_hint'));
  return h('ul', { class: 'anomalies', 'data-testid': 'anomalies' }, items.map(anomalyItem));
}
