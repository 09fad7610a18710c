// Agents: health (with why and since when), last activity, governance (which of the agent's
// paths go through ClawButler, computed from the gateway's live config) and the kill switch.
// Kill and recover both ask for a reason and a second tap; recover sends confirm: true, which
// the API requires. Every health change is a `health` event and every governance drift a
// `governance` event, which reload the list; it also refreshes every 15 s so "since" stays
// current.

import { h, dl } from '../dom.js';
import { t } from '../i18n.js';
import { post } from '../api.js';
import { toast, cardMsg, confirmIn } from '../components.js';
import { listPage } from '../listpage.js';
import { when, ago } from '../format.js';

export function mount(root, ctx) {
  return listPage(root, ctx, {
    title: t('agents.title'), testid: 'agents',
    path: '/api/v1/agents', key: (a) => a.id, events: ['kill_switch', 'health', 'governance', 'config_drift'], refresh: 15000,
    empty: [t('agents.empty'), t('agents.empty_hint')],
    item: card,
  }).unmount;
}

function card(a, page) {
  const panel = h('div', { class: 'panel' });
  const msg = cardMsg();
  const name = a.name || a.id;
  const act = (kind) => () => confirmIn(panel, msg, {
    text: t(`agents.${kind}_confirm`, { name }), label: t('agents.reason'), confirm: t(`agents.${kind}`),
    kind: kind === 'kill' ? 'deny' : 'allow',
    onConfirm: async (reason) => {
      await post(`/api/v1/agents/${encodeURIComponent(a.id)}/${kind}`, kind === 'kill' ? { reason } : { reason, confirm: true });
      toast(() => t(`agents.${kind}_done`, { name }));
    },
    then: page.reload,
  });
  return h('article', { class: `card agent-card${a.killed ? ' killed' : ''}`, 'data-testid': 'agent' },
    h('div', { class: 'card-head' },
      h('strong', {}, name),
      h('span', { class: `badge health-${a.health}`, 'data-testid': 'health' }, t(`health.${a.health}`, {}, a.health || '')),
      a.killed ? h('span', { class: 'badge risk-critical' }, t('agents.killed')) : null),
    a.health_reason ? h('p', { class: 'health-why', 'data-testid': 'health-reason' }, a.health_reason) : null,
    dl([
      [t('field.id'), a.id],
      [t('agents.health_since'), a.health_since ? t('agents.activity', { ago: ago(a.health_since), time: when(a.health_since) }) : ''],
      [t('agents.last_activity'), a.last_activity ? t('agents.activity', { ago: ago(a.last_activity), time: when(a.last_activity) }) : t('common.never')],
    ]),
    configDrift(a.config_drift),
    governance(a.governance),
    h('div', { class: 'actions' }, a.killed
      ? h('button', { class: 'allow', 'data-needs': 'admin', onclick: act('recover') }, t('agents.recover'))
      : h('button', { class: 'deny', 'data-needs': 'admin', onclick: act('kill') }, t('agents.kill'))),
    panel, msg);
}

// Drift of the agent's OpenClaw config from the version ClawButler made or accepted
// (docs/config-safety.md): nothing while there is none; UNGOVERNED when its wiring went away.
function configDrift(d) {
  if (!d || !d.drifted) return null;
  const text = d.ungoverned
    ? t('config.ungoverned', { lost: (d.wiring_lost || []).join(', '), v: d.suggested_version })
    : t('config.drifted', { risk: t(`risk.${d.risk}`, {}, d.risk || ''), v: d.suggested_version });
  return h('p', { class: `badge ${d.ungoverned ? 'risk-critical' : 'health-degraded'}`, 'data-testid': 'config-drift' }, text);
}

// The governance report of one agent: a badge for its model path, the paths that do not go
// through ClawButler with why, and every path on demand. The why texts come from the server.
function governance(g) {
  if (!g) return null;
  const paths = g.sections.flatMap((s) => s.paths.map((p) => ({ section: s.section, ...p })));
  const gaps = paths.filter((p) => p.state === 'ungoverned');
  const row = (p) => h('li', { 'data-state': p.state },
    h('strong', {}, t(`governance.section.${p.section}`)), ' · ', p.path, p.target ? ` (${p.target})` : '', ': ',
    h('span', { class: `badge gov-${p.state}` }, t(`governance.state.${p.state}`)), ' ', p.why);
  return h('section', { class: 'governance', 'data-testid': 'governance' },
    h('div', { class: 'card-head' },
      h('span', { class: `badge ${g.model_path_governed ? 'health-healthy' : 'health-offline'}`, 'data-testid': 'governance-state' },
        g.model_path_governed ? t('governance.governed') : t('governance.ungoverned')),
      g.source === 'last_known' ? h('span', { class: 'badge health-degraded' }, t('governance.last_known')) : null),
    gaps.length
      ? h('div', {}, h('p', { class: 'health-why' }, t('governance.gaps', { n: gaps.length })),
        h('ul', { class: 'governance-gaps', 'data-testid': 'governance-gaps' }, gaps.map(row)))
      : h('p', { class: 'health-why' }, t('governance.all_through')),
    h('details', {}, h('summary', {}, t('governance.all_paths', { time: when(g.computed_at) })),
      h('ul', { class: 'governance-all' }, paths.map(row))));
}
