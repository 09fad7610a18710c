// Notifications: Web Push on this device, my preferences per channel, the routes (config
// ones read-only; admins add, test and delete API routes) and the delivery log with each
// delivery's status, attempts and error. Routes and the log are list pages (listpage.js).

import { h, replace, dl, select } from '../dom.js';
import { t } from '../i18n.js';
import { get, post, put, del } from '../api.js';
import { riskBadge, busy, toast, cardMsg, setMsg, errorText, confirmIn, errorBox } from '../components.js';
import { listPage } from '../listpage.js';
import { when } from '../format.js';
import { pushSupported, currentSubscription, subscribeDevice, unsubscribeDevice } from '../push.js';

const RISKS = ['low', 'medium', 'high', 'critical'];
const STATUSES = ['', 'delivered', 'failed', 'retrying', 'queued', 'suppressed', 'abandoned'];
const DEVICE_KEY = 'clawbutler.push_id';

export function mount(root, ctx) {
  const deviceBox = h('section', { class: 'card', 'data-testid': 'push-device' });
  const prefsBox = h('section', { class: 'card', 'data-testid': 'prefs' });
  const routesRoot = h('div', { class: 'section' });
  const logRoot = h('div', { class: 'section' });
  replace(root, deviceBox, prefsBox, routesRoot, logRoot);
  let overview = { channels: [], event_kinds: [], push_public_key: '' };
  let gone = false;

  const editorPanel = h('div', { class: 'panel' });
  const routes = listPage(routesRoot, ctx, {
    title: t('notify.routes_title'), hint: t('notify.routes_hint'), testid: 'notify-routes',
    path: '/api/v1/notifications/routes', key: (r) => r.id,
    toolbar: [h('button', { class: 'primary', 'data-needs': 'admin', 'data-testid': 'route-new', onclick: () => openEditor() }, t('notify.route_new'))],
    above: [editorPanel],
    empty: [t('notify.routes_empty'), t('notify.routes_empty_hint')],
    item: routeCard,
  });

  let status = '';
  const statusFilter = select({
    'aria-label': t('notify.log_status'), 'data-testid': 'log-status',
    onchange: (e) => { status = e.target.value; log.reload(); },
  }, STATUSES.map((s) => [s, s ? t(`notify.st_${s}`) : t('common.any')]), status);
  const log = listPage(logRoot, ctx, {
    title: t('notify.log_title'), hint: t('notify.log_hint'), testid: 'notify-log', toolbar: [statusFilter],
    path: '/api/v1/notifications/deliveries', params: () => ({ status }), limit: 50,
    key: (d) => d.id, version: (d) => `${d.status}:${d.attempts}`,
    columns: [t('notify.col_time'), t('notify.col_route'), t('notify.col_channel'), t('notify.col_event'),
      t('notify.col_status'), t('notify.col_attempts'), t('notify.col_detail')],
    events: ['notification'], poll: 5000,
    empty: [t('notify.log_empty'), t('notify.log_empty_hint')],
    item: (d) => h('tr', { 'data-testid': 'delivery', 'data-status': d.status },
      h('td', {}, when(d.created_at)),
      h('td', {}, d.route),
      h('td', {}, d.channel),
      h('td', {}, h('code', {}, d.event), d.count > 1 ? ` ×${d.count}` : ''),
      h('td', {}, h('span', { class: `badge dl-${d.status}` }, t(`notify.st_${d.status}`, {}, d.status))),
      h('td', {}, String(d.attempts)),
      h('td', { class: 'small' }, detail(d))),
  });

  function detail(d) {
    if (d.status === 'delivered') return d.latency_ms != null ? t('unit.ms', { n: Math.round(d.latency_ms) }) : '';
    if (d.status === 'suppressed') return t(`notify.why_${d.reason}`, {}, d.reason || '');
    return d.last_error || '';
  }

  function routeCard(r) {
    const msg = cardMsg();
    const panel = h('div', { class: 'panel' });
    const q = r.quiet_hours;
    const test = (e) => busy(e.currentTarget, async () => {
      const res = await post(`/api/v1/notifications/routes/${encodeURIComponent(r.id)}/test`);
      const items = (res && res.items) || [];
      const failed = items.filter((d) => d.status !== 'delivered');
      setMsg(msg, failed.length
        ? t('notify.test_failed', { ok: items.length - failed.length, failed: failed.length, error: failed[0].last_error || failed[0].status })
        : t('notify.test_done', { n: items.length }), failed.length ? 'error' : '');
      log.reload();
    }, (err) => setMsg(msg, errorText(err), 'error'));
    const remove = () => confirmIn(panel, msg, {
      text: t('notify.route_delete_confirm', { id: r.id }), confirm: t('notify.route_delete'), testid: 'route-delete-confirm',
      onConfirm: async () => {
        await del(`/api/v1/notifications/routes/${encodeURIComponent(r.id)}`);
        toast(() => t('notify.route_deleted'));
      },
      then: routes.reload,
    });
    return h('article', { class: `card route${r.enabled ? '' : ' muted-card'}`, 'data-testid': 'route', 'data-id': r.id },
      h('div', { class: 'card-head' },
        h('strong', {}, r.id),
        h('span', { class: 'badge' }, t(`notify.source_${r.source}`)),
        r.enabled ? null : h('span', { class: 'badge st-expired' }, t('notify.disabled')),
        h('span', { class: 'spacer' }),
        (r.risks || []).map(riskBadge)),
      r.description ? h('p', { class: 'muted' }, r.description) : null,
      dl([
        [t('notify.events'), h('code', {}, (r.events || []).join(', '))],
        [t('notify.agents'), (r.agents || []).length ? r.agents.join(', ') : t('common.any')],
        [t('notify.channels'), (r.channels || []).join(', ')],
        [t('notify.escalate_to'), r.escalate_to || ''],
        [t('notify.quiet'), q ? t('notify.quiet_line', { start: q.start, end: q.end, tz: q.timezone, risk: q.break_through ? t(`risk.${q.break_through}`) : t('notify.quiet_none') }) : ''],
      ]),
      h('div', { class: 'actions', 'data-needs': 'admin' },
        h('button', { class: 'ghost', 'data-testid': 'route-test', onclick: test }, t('notify.route_test')),
        r.source === 'api' ? h('button', { class: 'deny', 'data-testid': 'route-delete', onclick: remove }, t('notify.route_delete')) : null),
      panel, msg);
  }

  function csv(v) { return v.split(',').map((x) => x.trim()).filter(Boolean); }

  function openEditor() {
    const msg = cardMsg();
    const id = h('input', { type: 'text', required: true, placeholder: t('notify.route_id_hint'), 'data-testid': 'route-id' });
    const events = h('input', { type: 'text', required: true, value: 'approval.*', 'data-testid': 'route-events' });
    const agents = h('input', { type: 'text', placeholder: t('notify.agents_hint') });
    const risks = RISKS.map((r) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: r }), t(`risk.${r}`)));
    const chans = overview.channels.map((c) => h('label', { class: 'check' },
      h('input', { type: 'checkbox', value: c.name, 'data-testid': `route-channel-${c.name}` }), `${c.name} (${c.kind})`));
    const escalate = select({ 'aria-label': t('notify.escalate_to') },
      [['', t('notify.none')], ...routes.items().map((r) => [r.id, r.id])], '');
    const qStart = h('input', { type: 'time', 'aria-label': t('notify.quiet_start') });
    const qEnd = h('input', { type: 'time', 'aria-label': t('notify.quiet_end') });
    const qTz = h('input', { type: 'text', value: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC', 'aria-label': t('notify.quiet_tz') });
    const qBreak = select({ 'aria-label': t('notify.quiet_break') },
      [['critical', t('risk.critical')], ['high', t('risk.high')], ['', t('notify.quiet_none')]], 'critical');
    const save = h('button', { type: 'submit', class: 'primary', 'data-testid': 'route-save' }, t('notify.route_save'));
    replace(editorPanel, h('form', {
      class: 'editor card',
      onsubmit: (e) => {
        e.preventDefault();
        const body = {
          id: id.value.trim(), events: csv(events.value), agents: csv(agents.value),
          risks: risks.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value),
          channels: chans.map((l) => l.firstChild).filter((c) => c.checked).map((c) => c.value),
        };
        if (escalate.value) body.escalate_to = escalate.value;
        if (qStart.value && qEnd.value) {
          body.quiet_hours = { start: qStart.value, end: qEnd.value, timezone: qTz.value.trim() || 'UTC', break_through: qBreak.value || null };
        }
        busy(save, async () => {
          await post('/api/v1/notifications/routes', body);
          toast(() => t('notify.route_created'));
          replace(editorPanel);
          await routes.reload();
        }, (err) => setMsg(msg, errorText(err), 'error'));
      },
    },
    h('h2', {}, t('notify.route_new')),
    h('label', {}, t('notify.route_id'), id),
    h('label', {}, t('notify.events_label'), events),
    h('p', { class: 'muted small' }, t('notify.events_hint', { kinds: overview.event_kinds.join(', ') })),
    h('label', {}, t('notify.agents'), agents),
    h('fieldset', {}, h('legend', {}, t('notify.risks_label')), risks),
    h('fieldset', {}, h('legend', {}, t('notify.channels')), chans.length ? chans : h('p', { class: 'muted' }, t('notify.no_channels'))),
    h('label', {}, t('notify.escalate_to'), escalate),
    h('fieldset', {}, h('legend', {}, t('notify.quiet')),
      h('label', {}, t('notify.quiet_start'), qStart), h('label', {}, t('notify.quiet_end'), qEnd),
      h('label', {}, t('notify.quiet_tz'), qTz), h('label', {}, t('notify.quiet_break'), qBreak)),
    h('div', { class: 'actions' }, save, h('button', { type: 'button', class: 'ghost', onclick: () => replace(editorPanel) }, t('common.cancel'))),
    msg));
    id.focus();
  }

  async function drawDevice() {
    if (!pushSupported()) {
      replace(deviceBox, h('h2', {}, t('notify.push_title')), h('p', { class: 'muted' }, t('notify.push_unsupported')));
      return;
    }
    const msg = cardMsg({ 'data-testid': 'push-msg' });
    let mine = [];
    try {
      const res = await get('/api/v1/notifications/push/subscriptions');
      mine = (res && res.items) || [];
    } catch (err) {
      replace(deviceBox, h('h2', {}, t('notify.push_title')), errorBox(err));
      return;
    }
    if (gone) return;
    const sub = await currentSubscription().catch(() => null);
    const savedId = localStorage.getItem(DEVICE_KEY);
    const here = sub && mine.find((s) => s.id === savedId);
    const label = h('input', { type: 'text', placeholder: t('notify.device_label') });
    const on = h('button', { class: 'primary', 'data-testid': 'push-on' }, t('notify.push_on'));
    on.addEventListener('click', () => busy(on, async () => {
      const s = await subscribeDevice(overview.push_public_key, label.value.trim());
      localStorage.setItem(DEVICE_KEY, s.id);
      toast(() => t('notify.push_done'));
      await drawDevice();
    }, (err) => setMsg(msg, err.status ? errorText(err) : t('notify.push_denied', { why: err.message }), 'error')));
    replace(deviceBox,
      h('h2', {}, t('notify.push_title')),
      h('p', { class: 'muted' }, here ? t('notify.push_here') : t('notify.push_hint')),
      here ? null : h('div', { class: 'actions' }, label, on),
      mine.length ? h('ul', { class: 'devices' }, mine.map((s) => h('li', { 'data-testid': 'device' },
        h('strong', {}, s.label || s.endpoint_origin), ' ',
        h('span', { class: 'muted small' }, t('notify.device_line', {
          since: when(s.created_at), ok: s.last_ok_at ? when(s.last_ok_at) : t('common.never'),
        })),
        s.last_error ? h('span', { class: 'small error-text' }, ` ${s.last_error}`) : null,
        h('button', { class: 'ghost', onclick: (e) => busy(e.currentTarget, async () => {
          await unsubscribeDevice(s.id, s.id === savedId);
          if (s.id === savedId) localStorage.removeItem(DEVICE_KEY);
          await drawDevice();
        }, (err) => setMsg(msg, errorText(err), 'error')) }, t('notify.device_remove'))))) : null,
      msg);
  }

  async function drawPrefs() {
    let res;
    try {
      res = await get('/api/v1/notifications/preferences');
    } catch (err) {
      replace(prefsBox, h('h2', {}, t('notify.prefs_title')), errorBox(err));
      return;
    }
    if (gone) return;
    const prefs = (res.preferences && res.preferences.channels) || {};
    const msg = cardMsg({ 'data-testid': 'prefs-msg' });
    const rows = (res.channels || []).map((c) => {
      const p = prefs[c.name] || { enabled: true, min_risk: 'low', events: [] };
      const enabled = h('input', { type: 'checkbox', checked: p.enabled !== false, 'data-testid': `pref-enabled-${c.name}` });
      const minRisk = select({ 'aria-label': t('notify.min_risk'), 'data-testid': `pref-risk-${c.name}` },
        RISKS.map((r) => [r, t(`risk.${r}`)]), p.min_risk || 'low');
      return { c, p, enabled, minRisk };
    });
    const save = h('button', { class: 'primary', 'data-testid': 'prefs-save' }, t('notify.prefs_save'));
    save.addEventListener('click', () => busy(save, async () => {
      const channels = {};
      for (const r of rows) channels[r.c.name] = { enabled: r.enabled.checked, min_risk: r.minRisk.value, events: r.p.events || [] };
      await put('/api/v1/notifications/preferences', { channels });
      setMsg(msg, t('notify.prefs_saved'));
    }, (err) => setMsg(msg, errorText(err), 'error')));
    replace(prefsBox,
      h('h2', {}, t('notify.prefs_title')),
      h('p', { class: 'muted' }, t('notify.prefs_hint', { name: res.owner })),
      rows.length ? h('div', { class: 'prefs' }, rows.map((r) => h('div', { class: 'pref-row' },
        h('label', { class: 'check' }, r.enabled, `${r.c.name} (${r.c.kind})`),
        h('label', {}, t('notify.min_risk'), r.minRisk)))) : h('p', { class: 'muted' }, t('notify.no_channels')),
      rows.length ? h('div', { class: 'actions' }, save) : null,
      msg);
  }

  get('/api/v1/notifications').then((o) => {
    overview = o || overview;
    if (!gone) { drawDevice(); drawPrefs(); }
  }).catch((err) => { if (!gone) replace(deviceBox, errorBox(err)); });

  return () => { gone = true; routes.unmount(); log.unmount(); };
}

