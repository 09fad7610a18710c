// An agent's Config History tab (docs/config-safety.md): its config versions (who changed what,
// when, a change made outside ClawButler marked as such), the semantic diff of any two, the
// drift of the live config from the version ClawButler made or accepted, and rollback: a dry
// run shows the plan (the changes, whether the gateway must restart), then one confirm applies
// it. A rollback the server holds for a human answers 202; the tab then says it waits for
// approval and links to the inbox. Reading is for every role; rolling back is for admins (the
// route's role), so the buttons carry `data-needs="admin"`.

import { h, replace, dl } from '../dom.js';
import { t } from '../i18n.js';
import { get, query, request } from '../api.js';
import { errorBox, loading, riskBadge, busy, cardMsg, setMsg, errorText, toast } from '../components.js';
import { changeGroups } from '../changes.js';
import { when, ago } from '../format.js';

/** Mount the tab for agent `id` into `root`; returns the cleanup. */
export function mount(root, ctx, id) {
  const base = `/api/v1/agents/${encodeURIComponent(id)}/config/versions`;
  const driftBox = h('section', { class: 'card', 'data-testid': 'drift' });
  const listBox = h('div', { class: 'versions', 'data-testid': 'versions' });
  const diffBox = h('section', { class: 'card', 'data-testid': 'diff', hidden: true });
  const planBox = h('section', { class: 'card rollback', 'data-testid': 'rollback', hidden: true });
  const st = { items: [], baseline: null, picked: [], alive: true, seq: 0, diffSeq: 0 };
  replace(root,
    driftBox,
    h('section', { class: 'card' },
      h('h2', {}, t('history.versions')),
      h('p', { class: 'muted small' }, t('history.pick_hint')),
      listBox),
    diffBox, planBox);

  async function loadVersions() {
    const mine = ++st.seq;
    if (!st.items.length) replace(listBox, loading());
    try {
      const res = await get(base);
      if (!st.alive || mine !== st.seq) return;
      const first = !st.items.length;
      st.items = res.items || [];
      st.baseline = res.baseline_version;
      const known = new Set(st.items.map((v) => v.version));
      st.picked = st.picked.filter((v) => known.has(v));
      // The first time, compare the two newest: the latest change is what one opens the tab for.
      if (first && st.items.length >= 2) st.picked = [st.items[1].version, st.items[0].version];
      drawVersions();
      if (first) loadDiff();
    } catch (err) {
      if (st.alive && mine === st.seq) replace(listBox, errorBox(err));
    }
  }

  function drawVersions() {
    const newest = st.items.length ? st.items[0].version : null;
    replace(listBox, h('ul', { class: 'version-list' }, st.items.map((v) => versionRow(v, {
      baseline: v.version === st.baseline,
      newest: v.version === newest,
      picked: st.picked.includes(v.version),
      onPick: (on) => pick(v.version, on),
      onRollback: (e) => preview(v.version, e.currentTarget),
    }))));
  }

  function pick(v, on) {
    st.picked = st.picked.filter((x) => x !== v);
    if (on) st.picked.push(v);
    if (st.picked.length > 2) st.picked = st.picked.slice(-2);
    drawVersions();
    loadDiff();
  }

  async function loadDiff() {
    const mine = ++st.diffSeq; // a quicker second pick must not be overwritten by the first's answer
    if (st.picked.length !== 2) {
      diffBox.hidden = true;
      return;
    }
    const [from, to] = st.picked.slice().sort((a, b) => a - b);
    diffBox.hidden = false;
    replace(diffBox, loading());
    try {
      const d = await get(`${base}/diff${query({ from, to })}`);
      if (!st.alive || mine !== st.diffSeq) return;
      replace(diffBox,
        h('div', { class: 'card-head' }, h('h2', {}, t('history.diff_title', { from, to })), riskBadge(d.risk)),
        h('p', { class: 'muted small' }, t('history.diff_meta', { from: when(d.from.at), to: when(d.to.at) })),
        changeGroups(d.changes, t('history.no_diff')));
    } catch (err) {
      if (st.alive && mine === st.diffSeq) replace(diffBox, errorBox(err));
    }
  }

  async function loadDrift(button) {
    const run = async () => {
      if (!button) replace(driftBox, h('h2', {}, t('history.drift')), loading());
      try {
        const d = await get(`${base}/drift`);
        if (st.alive) replace(driftBox, ...driftView(d, { again: (e) => loadDrift(e.currentTarget), rollback: preview }));
      } catch (err) {
        if (st.alive) replace(driftBox, h('h2', {}, t('history.drift')), errorBox(err));
      }
    };
    if (button) await busy(button, run); else await run();
  }

  /** The dry run: the plan and a confirm that applies it. */
  async function preview(to, button) {
    const msg = cardMsg();
    const run = async () => {
      const plan = (await request('POST', `${base}/rollback`, { to, dry_run: true })).data;
      if (!st.alive) return;
      planBox.hidden = false;
      replace(planBox, ...planView(plan, msg, { apply: (b) => apply(to, b, msg), cancel: () => { planBox.hidden = true; } }));
      planBox.scrollIntoView({ block: 'start', behavior: 'smooth' });
    };
    await busy(button, run, (err) => toast(() => errorText(err), 'error'));
  }

  async function apply(to, button, msg) {
    setMsg(msg, '');
    await busy(button, async () => {
      const res = await request('POST', `${base}/rollback`, { to, dry_run: false });
      if (!st.alive) return;
      replace(planBox, ...resultView(to, res));
      loadVersions();
      loadDrift();
    }, (err) => setMsg(msg, errorText(err), err.status === 409 ? 'conflict' : 'error'));
  }

  const onEvent = (e) => {
    const d = e.detail && e.detail.data;
    const rec = d && (d.record || d);
    if (rec && rec.kind === 'config' && (!rec.agent || rec.agent === id)) loadVersions();
  };
  ctx.bus.addEventListener('event', onEvent);
  loadDrift();
  loadVersions();
  return () => { st.alive = false; ctx.bus.removeEventListener('event', onEvent); };
}

/** One version: pick box, number, baseline, who (outside ClawButler marked), when, scopes. */
function versionRow(v, o) {
  const outside = v.source === 'outside';
  const box = h('input', {
    type: 'checkbox', class: 'pick', checked: o.picked, 'aria-label': t('history.pick', { v: v.version }),
    'data-testid': 'version-pick', onchange: (e) => o.onPick(e.target.checked),
  });
  return h('li', { class: `version${outside ? ' outside' : ''}`, 'data-testid': 'version', 'data-version': v.version, 'data-source': v.source },
    h('label', { class: 'version-pick' }, box),
    h('div', { class: 'version-body' },
      h('div', { class: 'card-head' },
        h('strong', {}, t('history.version', { v: v.version })),
        o.baseline ? h('span', { class: 'badge health-healthy', 'data-testid': 'baseline' }, t('history.baseline')) : null,
        h('span', { class: `badge src-${v.source}`, 'data-testid': 'source' }, t(`history.source.${v.source}`, {}, v.source)),
        v.source === 'clawbutler' ? h('span', { class: 'muted small' }, v.actor) : null,
        h('span', { class: 'muted small', title: when(v.at) }, ago(v.at))),
      h('div', { class: 'scopes' },
        (v.changed_scopes || []).map((s) => h('span', { class: 'badge', 'data-scope': s }, t(`cscope.${s}`, {}, s))),
        v.trigger ? h('span', { class: 'muted small' }, t('history.trigger', { trigger: v.trigger })) : null)),
    o.newest ? null : h('button', {
      class: 'ghost', 'data-needs': 'admin', 'data-testid': 'rollback-preview', onclick: o.onRollback,
    }, t('history.rollback_to', { v: v.version })));
}

/** The drift check: nothing, or which fields drifted and the version to return to. */
function driftView(d, on) {
  const again = h('button', { class: 'ghost', 'data-testid': 'drift-check', onclick: on.again }, t('history.check_again'));
  const head = h('div', { class: 'card-head' }, h('h2', {}, t('history.drift')), riskBadge(d.risk),
    h('span', { class: 'spacer' }), again);
  const stale = d.source === 'last_known' ? h('p', { class: 'badge health-degraded' }, t('history.last_known')) : null;
  if (!d.drifted) {
    return [head, stale, h('p', { 'data-testid': 'drift-state', 'data-drifted': 'false' },
      t('history.no_drift', { v: d.baseline ? d.baseline.version : '' }))];
  }
  const to = d.suggested_version;
  return [head, stale,
    d.ungoverned
      ? h('p', { class: 'badge risk-critical', 'data-testid': 'ungoverned' }, t('history.ungoverned', { lost: (d.wiring_lost || []).join(', ') }))
      : null,
    h('p', { 'data-testid': 'drift-state', 'data-drifted': 'true' },
      t('history.drifted', { n: (d.changes || []).length, base: d.baseline.version, live: d.live.version })),
    changeGroups(d.changes),
    to != null ? h('div', { class: 'actions' },
      h('p', { class: 'suggest', 'data-testid': 'suggested' }, t('history.suggested', { v: to })),
      h('button', { class: 'primary', 'data-needs': 'admin', 'data-testid': 'drift-rollback', onclick: (e) => on.rollback(to, e.currentTarget) },
        t('history.rollback_to', { v: to }))) : null];
}

/** The dry run's plan, with the confirm. */
function planView(p, msg, on) {
  const kinds = (p.restart && p.restart.reload_kinds) || {};
  const restartPaths = Object.keys(kinds).filter((k) => kinds[k] === 'restart');
  const ok = h('button', { class: 'deny', 'data-needs': 'admin', 'data-testid': 'rollback-apply', onclick: (e) => on.apply(e.currentTarget) },
    t('history.apply', { v: p.to_version }));
  return [
    h('div', { class: 'card-head' }, h('h2', {}, t('history.plan_title', { v: p.to_version })), riskBadge(p.risk)),
    h('p', { class: 'muted small' }, t('history.plan_meta', { from: p.from_version, v: p.to_version })),
    h('p', { class: `badge ${p.restart && p.restart.required ? 'risk-high' : 'health-healthy'}`, 'data-testid': 'restart' },
      p.restart && p.restart.required ? t('history.restart_needed', { paths: restartPaths.join(', ') }) : t('history.no_restart')),
    changeGroups(p.changes, t('history.plan_empty', { v: p.to_version })),
    p.skipped && p.skipped.length ? h('div', { 'data-testid': 'skipped' }, h('p', {}, t('history.skipped')),
      h('ul', {}, p.skipped.map((s) => h('li', {}, h('code', {}, s.path), ' ', h('span', { class: 'muted' }, s.why))))) : null,
    p.exec_approvals_change ? h('p', { class: 'muted' }, t('history.exec_change')) : null,
    h('p', { class: 'muted small' }, t('history.save_first')),
    h('div', { class: 'actions' }, (p.changes || []).length ? ok : null,
      h('button', { class: 'ghost', 'data-testid': 'rollback-cancel', onclick: on.cancel }, t('common.cancel'))),
    msg];
}

/** What the rollback did: applied (exactly or not), nothing to do, or waiting for approval. */
function resultView(to, res) {
  const r = res.data || {};
  if (res.status === 202) {
    const id = r.approval_id || (r.approval && r.approval.id) || r.id || '';
    return [h('h2', {}, t('history.plan_title', { v: to })),
      h('p', { class: 'badge risk-medium', 'data-testid': 'rollback-waiting' }, t('history.waiting')),
      h('p', {}, t('history.waiting_hint')),
      h('a', { href: `#/approvals/${encodeURIComponent(id)}`, 'data-testid': 'rollback-approval' }, t('history.open_inbox'))];
  }
  if (r.applied === false) {
    return [h('h2', {}, t('history.plan_title', { v: to })), h('p', { 'data-testid': 'rollback-result', 'data-applied': 'false' }, r.why || t('history.plan_empty', { v: to }))];
  }
  const left = r.not_restored || [];
  return [h('h2', {}, t('history.plan_title', { v: to })),
    h('p', { class: `badge ${r.restored_exactly ? 'health-healthy' : 'risk-high'}`, 'data-testid': 'rollback-result', 'data-applied': 'true' },
      r.restored_exactly ? t('history.restored', { v: to }) : t('history.not_exact', { v: to, n: left.length })),
    left.length ? h('ul', {}, left.map((c) => h('li', {}, h('code', {}, c.path || JSON.stringify(c))))) : null,
    dl([[t('history.undo'), t('history.undo_text', { v: r.pre_rollback_version })],
      [t('history.new_version'), r.new_version != null ? String(r.new_version) : '']])];
}
