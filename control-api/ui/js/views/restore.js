// Restoring a backup package (docs/config-safety.md "Import"), in three steps an admin can
// check: open the package (a stored one or a file from this device) with its passphrase and
// see what it holds; pick a strategy (merge, replace_scope of chosen agents and sections, or
// exact_restore) and preview every change per agent and section; then restore, after which the
// answer names the checkpoint package that undoes it. A restore with a critical change waits
// for an approver (202): the panel says so, links the inbox, and polls until it shows how it
// ended (restored, or not applied and why). A package the server refuses (wrong
// passphrase, tampered, truncated, newer format, not a package) is said in the UI's language
// with the server's own words under it; nothing was applied.

import { h, replace, select } from '../dom.js';
import { t } from '../i18n.js';
import { get, post } from '../api.js';
import { busy, cardMsg, setMsg, errorText, riskBadge, toast } from '../components.js';
import { changeGroups } from '../changes.js';
import { bytes as size } from '../format.js';

const UPLOAD = '';
/** How often a restore waiting for approval is polled. */
const POLL_MS = 1000;
const STRATEGIES = ['merge', 'replace_scope', 'exact_restore'];

/** Why a package was refused, from the server's detail (HTTP 422 "Package refused"). */
const REFUSALS = [
  ['wrong passphrase', () => t('restore.refused_key')], ['tampered', () => t('restore.refused_tampered')],
  ['truncated', () => t('restore.refused_truncated')], ['newer than', () => t('restore.refused_newer')],
  ['not a ClawButler backup', () => t('restore.refused_not_package')],
];

/** A failed request, said plainly: a refused package names why, anything else as usual. */
export function refusal(err) {
  if (err.status !== 422) return errorText(err);
  const hit = REFUSALS.find(([needle]) => (err.detail || '').includes(needle));
  const head = hit ? hit[1]() : t('restore.refused');
  return t('err.line', { title: head, detail: err.detail || '' });
}

async function base64(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

/** The panel; `open(id)` shows it with a stored package chosen. */
export function restorePanel({ onDone }) {
  const source = select({ 'data-testid': 'restore-source' }, [[UPLOAD, t('restore.upload')]], UPLOAD);
  const file = h('input', { type: 'file', accept: '.cbpkg,application/octet-stream', 'data-testid': 'restore-file' });
  const fileLabel = h('label', {}, t('restore.file'), file);
  const pass = h('input', { type: 'password', autocomplete: 'off', 'data-testid': 'restore-pass' });
  const msg = cardMsg({ 'data-testid': 'restore-msg' });
  const held = h('div', { 'data-testid': 'restore-contents' });
  const step2 = h('div', { class: 'restore-step', hidden: true });
  const preview = h('div', { 'data-testid': 'restore-preview' });
  const inspect = h('button', { type: 'submit', class: 'primary', 'data-testid': 'restore-inspect' }, t('restore.inspect'));
  let opened = null;

  const reset = () => { opened = null; replace(held); replace(preview); step2.hidden = true; setMsg(msg, ''); };
  source.addEventListener('change', () => { fileLabel.hidden = source.value !== UPLOAD; reset(); });
  file.addEventListener('change', reset);
  pass.addEventListener('input', () => { if (opened) reset(); });

  /** The package part of a request: a stored id, or the chosen file's bytes. */
  async function pkg() {
    if (source.value !== UPLOAD) return { id: source.value };
    const f = file.files && file.files[0];
    if (!f) throw Object.assign(new Error(t('restore.no_file')), { detail: t('restore.no_file') });
    return { package: await base64(f) };
  }

  const form = h('form', {
    class: 'card restore', hidden: true, 'data-needs': 'admin', 'data-testid': 'restore',
    onsubmit: (e) => {
      e.preventDefault();
      reset();
      busy(inspect, async () => {
        const body = { ...(await pkg()), passphrase: pass.value };
        const r = await post('/api/v1/backups/inspect', body);
        opened = { body, manifest: r.manifest || {}, contents: r.contents || {} };
        replace(held, contentsView(r));
        strategy.fill(opened);
        step2.hidden = false;
      }, (err) => setMsg(msg, refusal(err), 'error'));
    },
  },
  h('div', { class: 'card-head' }, h('h2', {}, t('restore.title')), h('span', { class: 'spacer' }),
    h('button', { type: 'button', class: 'ghost', onclick: () => { form.hidden = true; } }, t('common.close'))),
  h('p', { class: 'muted small' }, t('restore.hint')),
  h('label', {}, t('restore.source'), source), fileLabel,
  h('label', {}, t('restore.passphrase'), pass),
  h('div', { class: 'actions' }, inspect), msg, held, step2);

  const strategy = strategyStep(step2, preview, () => opened, msg, () => { onDone(); });

  return {
    el: form,
    open(id) {
      form.hidden = false;
      if (id) { source.value = id; fileLabel.hidden = true; }
      reset();
      form.scrollIntoView({ block: 'start', behavior: 'smooth' });
      pass.focus();
    },
    /** The stored packages the source list offers (kept in step with the page's list). */
    setStored(ids) {
      const keep = source.value;
      replace(source, [[UPLOAD, t('restore.upload')], ...ids.map((id) => [id, id])].map(([v, label]) => h('option', { value: v }, label)));
      source.value = [UPLOAD, ...ids].includes(keep) ? keep : UPLOAD;
      fileLabel.hidden = source.value !== UPLOAD;
    },
  };
}

/** What an opened package holds (never a secret value). */
function contentsView(r) {
  const m = r.manifest || {};
  const c = r.contents || {};
  const files = Object.entries(c.files || {}).filter(([, names]) => names.length).map(([a, names]) => `${a}: ${names.join(', ')}`);
  return h('div', { class: 'state', 'data-testid': 'restore-verified' },
    h('strong', {}, t('restore.verified', { id: m.id || '', size: size(r.bytes) })),
    h('p', { class: 'small' }, t('restore.holds', {
      intent: t(`backups.intent.${m.intent}`, {}, m.intent || ''), agents: (c.agents || []).join(', '),
      sections: (c.sections || []).join(', '), cron: (c.cron_jobs || []).length,
    })),
    files.length ? h('p', { class: 'small muted' }, t('restore.files', { files: files.join('; ') })) : null);
}

/** Step 2: strategy, scope, secrets for a clone, preview, and the restore itself. */
function strategyStep(root, preview, opened, msg, onDone) {
  const strategy = select({ 'data-testid': 'restore-strategy' }, STRATEGIES.map((s) => [s, t(`restore.strategy.${s}`)]), 'merge');
  const about = h('p', { class: 'muted small' }, t('restore.strategy_hint.merge'));
  const scope = h('div', { class: 'restore-scope', hidden: true });
  const secrets = h('div', { class: 'restore-secrets' });
  const go = h('button', { type: 'button', class: 'primary', 'data-testid': 'restore-preview-run' }, t('restore.preview'));
  strategy.addEventListener('change', () => {
    about.textContent = t(`restore.strategy_hint.${strategy.value}`);
    scope.hidden = strategy.value !== 'replace_scope';
    replace(preview);
  });

  const picked = (name) => [...scope.querySelectorAll(`input[name=${name}]:checked`)].map((i) => i.value);
  const request = (dryRun) => {
    const o = opened();
    const filled = {};
    for (const i of secrets.querySelectorAll('input')) if (i.value) filled[i.dataset.path] = i.value;
    const scoped = strategy.value === 'replace_scope';
    return {
      ...o.body, strategy: strategy.value, agents: scoped ? picked('agent') : [], sections: scoped ? picked('section') : [],
      secrets: filled, dry_run: dryRun,
    };
  };

  go.addEventListener('click', () => {
    setMsg(msg, '');
    busy(go, async () => {
      const p = await post('/api/v1/backups/import', request(true));
      const cron = p.cron || {};
      const work = (p.changes || []).length + (p.files || []).length
        + ['add', 'update', 'remove'].reduce((n, k) => n + (cron[k] || []).length, 0);
      replace(preview, ...previewView(p, work === 0), work ? [h('div', { class: 'actions' }, h('button', {
        type: 'button', class: 'deny', 'data-testid': 'restore-apply',
        onclick: (e) => apply(e.currentTarget),
      }, t('restore.apply', { strategy: t(`restore.strategy.${p.strategy}`, {}, p.strategy) }))),
      h('p', { class: 'muted small' }, t('restore.checkpoint_hint'))] : []);
    }, (err) => setMsg(msg, refusal(err), 'error'));
  });

  function apply(button) {
    setMsg(msg, '');
    busy(button, async () => {
      const r = await post('/api/v1/backups/import', request(false));
      if (r.status === 'awaiting_approval') {
        const waiting = heldView(r);
        replace(preview, waiting);
        follow(r.poll, waiting);
        return;
      }
      replace(preview, resultView(r));
      toast(() => (r.complete ? t('restore.done') : t('restore.partial')));
      onDone();
    }, (err) => setMsg(msg, refusal(err), err.status === 409 ? 'conflict' : 'error'));
  }

  /** Poll a held restore until it settled; stops when its view was replaced (a new preview). */
  async function follow(path, waiting) {
    for (;;) {
      await new Promise((ok) => setTimeout(ok, POLL_MS));
      if (!waiting.isConnected) return;
      let now;
      try { now = await get(path); } catch { continue; }
      if (!waiting.isConnected) return;
      if (now.status === 'awaiting_approval' || now.status === 'applying') continue;
      const ok = now.status === 'applied';
      replace(preview, settledView(now));
      toast(() => (ok ? t('restore.done') : t('restore.not_applied', { status: now.status })));
      onDone();
      return;
    }
  }

  replace(root, h('label', {}, t('restore.strategy'), strategy), about, scope, secrets,
    h('div', { class: 'actions' }, go), preview);

  return {
    /** Offer the opened package's agents and sections, and its secret references. */
    fill(o) {
      const box = (name, v) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name, value: v, 'data-testid': `scope-${name}` }), v);
      replace(scope,
        h('p', { class: 'small' }, t('restore.scope_agents')), (o.contents.agents || []).map((a) => box('agent', a)),
        h('p', { class: 'small' }, t('restore.scope_sections')), [...new Set([...(o.contents.sections || []), 'cron'])].map((s) => box('section', s)));
      const refs = (o.manifest.secrets && o.manifest.secrets.references) || [];
      replace(secrets, refs.length ? [h('p', { class: 'small' }, t('restore.refs', { n: refs.length })),
        refs.map((p) => h('label', {}, h('code', {}, p), h('input', { type: 'password', autocomplete: 'off', 'data-path': p })))] : []);
      replace(preview);
    },
  };
}

/** The import preview: every change per agent and per section, cron jobs, files, skipped. */
function previewView(p, nothing) {
  const by = p.by || {};
  const part = (kind, name, changes) => h('section', { class: 'restore-part', 'data-testid': `preview-${kind}`, 'data-name': name },
    h('h3', {}, t(`restore.part_${kind}`, { name })), changeGroups(changes));
  const cron = p.cron || {};
  const cronLines = [['add', cron.add], ['update', cron.update], ['remove', cron.remove]]
    .filter(([, l]) => l && l.length).map(([k, l]) => h('li', {}, t(`restore.cron_${k}`, { jobs: l.join(', ') })));
  const agents = Object.entries(by.agents || {});
  const sections = Object.entries(by.sections || {});
  return [
    h('div', { class: 'card-head' }, h('h3', {}, t('restore.preview_title', { n: (p.changes || []).length })), riskBadge(p.risk)),
    nothing ? h('p', { 'data-testid': 'preview-nothing' }, t('restore.nothing')) : null,
    agents.map(([a, c]) => part('agent', a, c)),
    sections.map(([s, c]) => part('section', s, c)),
    cronLines.length ? h('ul', { 'data-testid': 'preview-cron' }, cronLines) : null,
    (p.files || []).length ? h('p', { 'data-testid': 'preview-files' }, t('restore.files_write', {
      files: p.files.map((f) => `${f.agent}/${f.name}`).join(', ') })) : null,
    (p.skipped || []).length ? h('div', { class: 'cautions' }, h('p', {}, t('restore.skipped')),
      h('ul', {}, p.skipped.map((s) => h('li', {}, h('code', {}, s.path || String(s)), ' ', s.why || '')))) : null,
    (p.unfilled_references || []).length ? h('p', { class: 'cautions' }, t('restore.unfilled', { paths: p.unfilled_references.join(', ') })) : null,
  ];
}

/** What the restore did: complete or not, the checkpoint that undoes it. */
function resultView(r) {
  const left = r.not_restored || [];
  return h('div', { class: `state ${r.complete ? '' : 'error'}`, 'data-testid': 'restore-result', 'data-complete': String(Boolean(r.complete)) },
    h('strong', {}, r.complete ? t('restore.done_line', { s: ((r.took_ms || 0) / 1000).toFixed(1) }) : t('restore.partial')),
    r.checkpoint ? h('p', {}, t('restore.checkpoint', { id: r.checkpoint })) : null,
    (r.errors || []).length ? h('ul', {}, r.errors.map((e) => h('li', {}, e))) : null,
    left.length ? h('p', {}, t('restore.not_restored', { paths: left.map((c) => c.path || String(c)).join(', ') })) : null);
}

/** A restore waiting for an approver: what makes it critical, and where to decide it. */
function heldView(r) {
  const subject = (r.approval && r.approval.subject) || {};
  const id = r.approval_id || '';
  return h('div', { class: 'state', 'data-testid': 'restore-waiting', 'data-approval': id },
    h('p', { class: 'badge risk-medium' }, t('restore.waiting')),
    h('p', {}, t('restore.waiting_hint')),
    Array.isArray(subject.critical_paths)
      ? h('ul', { class: 'critical-paths' }, subject.critical_paths.map((p) => h('li', {}, h('code', {}, p))))
      : null,
    h('a', { href: `#/approvals/${encodeURIComponent(id)}`, 'data-testid': 'restore-approval' }, t('restore.open_inbox')));
}

/** How a held restore ended: restored (as any restore), or not applied and why. */
function settledView(s) {
  const by = s.decided_by ? h('p', { class: 'small muted' }, t('restore.decided_by', { who: s.decided_by })) : null;
  if (s.status === 'applied' || s.status === 'incomplete') {
    const view = resultView(s);
    view.dataset.status = s.status;
    view.append(...[by].filter(Boolean));
    return view;
  }
  return h('div', { class: 'state error', 'data-testid': 'restore-result', 'data-complete': 'false', 'data-status': s.status },
    h('strong', {}, t('restore.not_applied', { status: t(`restore.status.${s.status}`, {}, s.status) })),
    s.why ? h('p', {}, s.why) : null, by);
}
