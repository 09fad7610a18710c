// OpenClaw's cron jobs under governance (GET /api/v1/cron/jobs): schedule, agent, state,
// last and next run, failures in a row, cost of the recent runs, a budget pause. Approvers
// pause and resume (POST .../disable, .../enable, with the revision shown, so a job changed
// meanwhile answers 409 instead of being overwritten); admins run a job now.

import { h } from '../dom.js';
import { t } from '../i18n.js';
import { post } from '../api.js';
import { toast, errorText } from '../components.js';
import { listPage } from '../listpage.js';
import { usd, when } from '../format.js';

export function mount(root, ctx) {
  return listPage(root, ctx, {
    title: t('cron.title'), testid: 'cron',
    path: '/api/v1/cron/jobs', key: (j) => j.id, refresh: 30000,
    empty: [t('cron.empty'), t('cron.empty_hint')],
    item: card,
  }).unmount;
}

function schedule(s) {
  if (!s) return '';
  if (s.kind === 'every') return t('cron.every', { s: Math.round((Number(s.everyMs) || 0) / 1000) });
  if (s.kind === 'cron') return t('cron.expr', { expr: s.expr || '' });
  return s.kind;
}

function card(j, page) {
  const act = (verb, done) => async (e) => {
    e.target.disabled = true;
    try {
      const body = verb === 'run' ? {} : { expected_revision: j.config_revision };
      await post(`/api/v1/cron/jobs/${encodeURIComponent(j.id)}/${verb}`, body);
      toast(() => done());
      page.reload();
    } catch (err) {
      toast(() => errorText(err), 'error');
    } finally {
      e.target.disabled = false;
    }
  };
  const fails = Number(j.consecutive_failures) || 0;
  const cost = j.cost && j.cost.usd != null ? usd(j.cost.usd) : '—';
  return h('article', { class: 'card cron', 'data-testid': 'cron-job' },
    h('div', { class: 'card-head' },
      h('strong', {}, j.name || j.id),
      h('span', { class: 'badge' }, schedule(j.schedule)),
      h('span', { class: j.enabled ? 'badge' : 'badge risk-medium' }, j.enabled ? t('cron.on') : t('cron.off')),
      j.budget_paused ? h('span', { class: 'badge risk-high' }, t('cron.budget_paused', { budget: j.budget_paused.budget })) : null,
      fails > 0 ? h('span', { class: 'badge risk-high' }, t('cron.failures', { n: fails })) : null,
      h('span', { class: 'spacer' }),
      h('span', { class: 'amount', title: t('cron.cost_hint') }, cost)),
    h('p', { class: 'muted small' }, [
      t('cron.agent', { agent: j.agent || '' }),
      j.last_run_at ? t('cron.last', { when: when(j.last_run_at), status: j.last_status || '' }) : t('cron.never'),
      j.next_run_at ? t('cron.next', { when: when(j.next_run_at) }) : '',
    ].filter(Boolean).join(' · ')),
    h('div', { class: 'actions' },
      j.enabled
        ? h('button', { class: 'ghost', 'data-needs': 'approver', onclick: act('disable', () => t('cron.paused')) }, t('cron.pause'))
        : h('button', { class: 'ghost', 'data-needs': 'approver', onclick: act('enable', () => t('cron.resumed')) }, t('cron.resume')),
      h('button', { class: 'ghost', 'data-needs': 'admin', onclick: act('run', () => t('cron.run_done')) }, t('cron.run'))));
}
