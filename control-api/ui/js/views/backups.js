// Backups: encrypted packages of the linked OpenClaw gateway (`.cbpkg`, docs/config-safety.md
// "Backups"). Everyone signed in sees the stored packages (their manifests hold no secret);
// admins create one (intent backup, clone or share, locked with a passphrase), download it
// (still encrypted) and restore one, stored or uploaded, after a preview (views/restore.js).

import { h, dl, replace, select } from '../dom.js';
import { t } from '../i18n.js';
import { post, download } from '../api.js';
import { busy, cardMsg, setMsg, errorText, toast } from '../components.js';
import { listPage } from '../listpage.js';
import { when, bytes as size } from '../format.js';
import { restorePanel } from './restore.js';

const INTENTS = ['backup', 'clone', 'share'];

export function mount(root, ctx) {
  const restore = restorePanel({ onDone: () => page.reload() });
  const create = createForm(() => page.reload());
  const newButton = h('button', {
    class: 'primary', 'data-needs': 'admin', 'data-testid': 'backup-new',
    onclick: () => { create.hidden = !create.hidden; if (!create.hidden) create.querySelector('select').focus(); },
  }, t('backups.new'));
  const page = listPage(root, ctx, {
    title: t('backups.title'), hint: t('backups.hint'), testid: 'backups',
    toolbar: [newButton], above: [create, restore.el],
    path: '/api/v1/backups', key: (b) => b.id, events: ['config'],
    empty: [t('backups.empty'), t('backups.empty_hint')],
    item: (b) => card(b, restore),
    onDraw: (items) => restore.setStored(items.filter((b) => !b.unreadable).map((b) => b.id)),
  });
  return page.unmount;
}

function createForm(onCreated) {
  const intent = select({ name: 'intent', 'data-testid': 'backup-intent' }, INTENTS.map((i) => [i, t(`backups.intent.${i}`)]), 'backup');
  const about = h('p', { class: 'muted small', 'data-testid': 'backup-intent-hint' }, t('backups.intent_hint.backup'));
  intent.addEventListener('change', () => { about.textContent = t(`backups.intent_hint.${intent.value}`); });
  const pass = h('input', { type: 'password', autocomplete: 'new-password', required: true, 'data-testid': 'backup-pass' });
  const again = h('input', { type: 'password', autocomplete: 'new-password', required: true, 'data-testid': 'backup-pass2' });
  const note = h('input', { type: 'text', maxlength: 200, 'data-testid': 'backup-note' });
  const msg = cardMsg({ 'data-testid': 'backup-msg' });
  const result = h('div', { 'data-testid': 'backup-result' });
  const submit = h('button', { type: 'submit', class: 'primary', 'data-testid': 'backup-create' }, t('backups.create'));
  const form = h('form', {
    class: 'card editor backup-create', hidden: true, 'data-needs': 'admin',
    onsubmit: (e) => {
      e.preventDefault();
      setMsg(msg, '');
      replace(result);
      if (pass.value !== again.value) { setMsg(msg, t('backups.pass_mismatch'), 'error'); return; }
      busy(submit, async () => {
        const r = await post('/api/v1/backups', { intent: intent.value, passphrase: pass.value, note: note.value.trim() || undefined });
        pass.value = '';
        again.value = '';
        replace(result, created(r));
        toast(() => t('backups.created', { id: r.id }));
        onCreated();
      }, (err) => setMsg(msg, errorText(err), 'error'));
    },
  },
  h('h2', {}, t('backups.new')),
  h('label', {}, t('backups.intent'), intent), about,
  h('div', { class: 'grid2' },
    h('label', {}, t('backups.passphrase'), pass),
    h('label', {}, t('backups.passphrase_again'), again)),
  h('p', { class: 'muted small' }, t('backups.pass_hint')),
  h('label', {}, t('backups.note'), note),
  h('div', { class: 'actions' }, submit), msg, result);
  return form;
}

/** What a new package holds, and which secrets it could not include. */
function created(r) {
  const m = r.manifest || {};
  return h('div', { class: 'state', 'data-testid': 'backup-created' },
    h('strong', {}, t('backups.created_line', { id: r.id, size: size(r.bytes), ms: r.took_ms })),
    secretsLine(m));
}

/** A package's secrets, by intent: included and missing, references, or removed. */
function secretsLine(m) {
  const s = m.secrets || {};
  if (m.intent === 'backup') {
    const missing = s.missing || [];
    if (!missing.length) return h('p', { class: 'muted small' }, t('backups.secrets_all', { n: s.included || 0 }));
    return h('div', { class: 'cautions', 'data-testid': 'secrets-missing' },
      h('p', {}, t('backups.secrets_missing', { n: missing.length, why: s.missing_why || '' })),
      h('p', { class: 'small' }, missing.join(', ')));
  }
  if (m.intent === 'clone') return h('p', { class: 'muted small' }, t('backups.secrets_refs', { n: (s.references || []).length }));
  if (m.intent === 'share') return h('p', { class: 'muted small' }, t('backups.secrets_removed', { n: (s.removed || []).length }));
  return null;
}

function card(b, restore) {
  const msg = cardMsg();
  const sum = b.summary || {};
  const fileCount = Object.values(sum.files || {}).reduce((n, f) => n + f.length, 0);
  const dl1 = async (e) => {
    await busy(e.currentTarget, async () => {
      const blob = await download(`/api/v1/backups/${encodeURIComponent(b.id)}/download`);
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: `${b.id}.cbpkg`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      setMsg(msg, t('backups.downloaded', { size: size(blob.size) }));
    }, (err) => setMsg(msg, errorText(err), 'error'));
  };
  return h('article', { class: 'card backup', 'data-testid': 'backup', 'data-id': b.id, 'data-intent': b.intent || '' },
    h('div', { class: 'card-head' },
      h('code', { class: 'backup-id' }, b.id),
      b.intent ? h('span', { class: `badge intent-${b.intent}` }, t(`backups.intent.${b.intent}`, {}, b.intent)) : null,
      h('span', { class: 'muted small' }, size(b.bytes))),
    b.unreadable ? h('p', { class: 'error-text' }, t('backups.unreadable', { why: b.unreadable })) : null,
    b.note ? h('p', {}, b.note) : null,
    dl([
      [t('backups.created_at'), when(b.created_at)],
      [t('field.created_by'), b.created_by || ''],
      [t('backups.agents'), (sum.agents || []).join(', ')],
      [t('backups.holds'), sum.sections ? t('backups.contents', {
        sections: (sum.sections || []).length, cron: (sum.cron_jobs || []).length, files: fileCount,
      }) : ''],
      [t('backups.source'), b.source_gateway || ''],
    ]),
    b.unreadable ? null : secretsLine(b),
    b.unreadable ? null : h('div', { class: 'actions' },
      h('button', { class: 'ghost', 'data-needs': 'admin', 'data-testid': 'backup-download', onclick: dl1 }, t('backups.download')),
      h('button', { class: 'ghost', 'data-needs': 'admin', 'data-testid': 'restore-open', onclick: () => restore.open(b.id) }, t('backups.restore'))),
    msg);
}
