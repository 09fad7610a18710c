// Reports (GET /api/v1/reports): cost and governance reports of a period, made in the
// background. An approver creates one (POST /api/v1/reports) or retries a failed one; anyone
// downloads a done one's CSV or PDF: the page asks for a single-use link
// (POST .../{id}/link), fetches it once and saves the file. The list refreshes while a report
// is queued or running.

import { h, select } from '../dom.js';
import { t } from '../i18n.js';
import { post } from '../api.js';
import { toast, errorText, busy } from '../components.js';
import { listPage } from '../listpage.js';
import { when } from '../format.js';

const PERIODS = ['24h', '7d', '30d', '90d'];

// Zones offered besides this browser's own: the API takes any IANA zone whose offset is a whole
// number of hours (the figures are kept per UTC hour), so half-hour zones are not offered.
const ZONES = ['UTC', 'Europe/London', 'Europe/Berlin', 'America/New_York', 'America/Chicago',
  'America/Los_Angeles', 'Asia/Shanghai', 'Asia/Tokyo'];

/** A report's zone (reports made before zones existed are in UTC). */
const zoneOf = (r) => r.timezone || ZONES[0];

/** The zones to offer and the default: this browser's own when its offset is whole hours. */
function zones() {
  let own = 'UTC';
  try {
    own = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  } catch { /* keep UTC */ }
  const whole = new Date().getTimezoneOffset() % 60 === 0;
  if (!whole) return { list: ZONES, pick: 'UTC' };
  return { list: ZONES.includes(own) ? ZONES : [own, ...ZONES], pick: own };
}

export function mount(root, ctx) {
  let period = '7d';
  const periodSel = select({ 'aria-label': t('reports.period'), 'data-testid': 'report-period', onchange: (e) => { period = e.target.value; } },
    PERIODS.map((p) => [p, t(`reports.period_${p}`)]), period);
  const z = zones();
  let zone = z.pick;
  const zoneSel = select({ 'aria-label': t('reports.timezone'), 'data-testid': 'report-zone', onchange: (e) => { zone = e.target.value; } },
    z.list.map((name) => [name, name]), zone);
  const create = h('button', {
    'data-needs': 'approver', 'data-testid': 'report-create',
    onclick: (e) => busy(e.target, async () => {
      try {
        await post('/api/v1/reports', { since: period, timezone: zone });
        toast(() => t('reports.queued'));
        page.reload();
      } catch (err) {
        toast(() => errorText(err), 'error');
      }
    }),
  }, t('reports.create'));
  const page = listPage(root, ctx, {
    title: t('reports.title'), hint: t('reports.hint'), testid: 'reports',
    toolbar: [periodSel, zoneSel, create],
    path: '/api/v1/reports', key: (r) => r.id, version: (r) => `${r.status}/${r.attempts}`,
    refresh: 3000,
    empty: [t('reports.empty'), t('reports.empty_hint')],
    item: card,
  });
  return page.unmount;
}

/** Ask for a link, fetch the file once, save it. */
async function download(r, format) {
  const link = await post(`/api/v1/reports/${encodeURIComponent(r.id)}/link`, { format });
  const res = await fetch(link.url, { cache: 'no-store' });
  if (!res.ok) throw new Error(t('reports.download_failed', { status: res.status }));
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: `clawbutler-report-${r.since.slice(0, 10)}-${r.until.slice(0, 10)}.${format}` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return blob.size;
}

function card(r, page) {
  const fileButton = (format) => h('button', {
    class: 'ghost', 'data-testid': `report-${format}`,
    onclick: (e) => busy(e.target, async () => {
      try {
        const size = await download(r, format);
        toast(() => t('reports.downloaded', { format: format.toUpperCase(), bytes: size }));
      } catch (err) {
        toast(() => errorText(err), 'error');
      }
    }),
  }, format.toUpperCase());
  const retry = h('button', {
    class: 'ghost', 'data-needs': 'approver', 'data-testid': 'report-retry',
    onclick: (e) => busy(e.target, async () => {
      try {
        await post(`/api/v1/reports/${encodeURIComponent(r.id)}/retry`, {});
        toast(() => t('reports.queued'));
        page.reload();
      } catch (err) {
        toast(() => errorText(err), 'error');
      }
    }),
  }, t('reports.retry'));
  return h('article', { class: 'card report', 'data-testid': 'report', 'data-id': r.id, 'data-status': r.status },
    h('div', { class: 'card-head' },
      h('strong', {}, t('reports.period_line', { since: when(r.since), until: when(r.until) })),
      h('span', { class: 'badge', 'data-testid': 'report-zone-badge', title: t('reports.timezone') }, zoneOf(r)),
      h('span', { class: `badge st-${r.status}`, 'data-testid': 'report-status' }, t(`reports.status_${r.status}`)),
      r.schedule ? h('span', { class: 'badge' }, t('reports.scheduled', { name: r.schedule })) : null),
    h('p', { class: 'muted small' }, [
      t('reports.requested', { who: r.requested_by, when: when(r.created_at) }),
      r.attempts > 1 ? t('reports.attempts', { n: r.attempts }) : '',
    ].filter(Boolean).join(' · ')),
    r.error ? h('p', { class: 'msg error', 'data-testid': 'report-error' }, r.error) : null,
    h('div', { class: 'actions' },
      r.status === 'done' ? [fileButton('pdf'), fileButton('csv')] : null,
      r.status === 'failed' ? retry : null));
}
