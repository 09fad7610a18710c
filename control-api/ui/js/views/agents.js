// Agents: health (with why and since when), last activity, governance (which of the agent's
// paths go through ClawButler, computed from the gateway's live config) and the kill switch.
// Kill and recover both ask for a reason and a second tap; recover sends confirm: true, which
// the API requires. Every health change is a `health` event and every governance drift a
// `governance` event, which reload the list; it also refreshes every 15 s so "since" stays
// current.
//
// `#/agents/<id>` is one agent's page, with tabs: its card (overview) and `#/agents/<id>/config`,
// its Config History (views/confighistory.js).

import { h, dl, replace } from '../dom.js';
import { t } from '../i18n.js';
import { get, post } from '../api.js';
import { toast, cardMsg, confirmIn, errorBox, loading, pageHead } from '../components.js';
import { listPage } from '../listpage.js';
import { when, ago } from '../format.js';
import * as configHistory from './confighistory.js';

export function mount(root, ctx) {
  const [, id, tab] = location.hash.replace(/^#\/?/, '').split('?')[0].split('/');
  if (id) return agentPage(root, ctx, decodeURIComponent(id), tab === 'config' ? 'config' : 'overview');
  return listPage(root, ctx, {
    title: t('agents.title'), testid: 'agents',
    path: '/api/v1/agents', key: (a) => a.id, events: ['kill_switch', 'health', 'governance', 'config_drift'], refresh: 15000,
    empty: [t('agents.empty'), t('agents.empty_hint')],
    item: card,
  }).unmount;
}

/** One agent: its name, the tabs, and the chosen tab. */
function agentPage(root, ctx, id, tab) {
  const enc = encodeURIComponent(id);
  const head = pageHead(id);
  const body = h('div', { class: 'agent-tab', 'data-testid': `agent-tab-${tab}` });
  const links = [['overview', `#/agents/${enc}`], ['config', `#/agents/${enc}/config`]];
  const tabs = h('nav', { class: 'subtabs', 'aria-label': t('agent.tabs') },
    links.map(([k, href]) => h('a', {
      href, class: k === tab ? 'active' : '', 'aria-current': k === tab ? 'page' : null, 'data-testid': `agent-tab-link-${k}`,
    }, t(`agent.tab.${k}`))));
  replace(root, h('a', { href: '#/agents', class: 'back' }, t('agent.back')), head, tabs, body);
  let alive = true;
  const load = async () => {
    if (tab === 'overview' && !body.firstChild) replace(body, loading());
    try {
      const a = await get(`/api/v1/agents/${enc}`);
      if (!alive) return;
      head.querySelector('h1').textContent = a.name || a.id;
      if (tab === 'overview') replace(body, card(a, { reload: load }));
    } catch (err) {
      // The Config History reads OpenClaw's config: it works for an agent the sidecar has not seen.
      if (alive && tab === 'overview') replace(body, errorBox(err));
    }
  };
  load();
  const stop = tab === 'config' ? configHistory.mount(body, ctx, id) : null;
  return () => { alive = false; if (stop) stop(); };
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
    h('div', { class: 'actions' },
      h('a', { class: 'button-link', href: `#/agents/${encodeURIComponent(a.id)}/config`, 'data-testid': 'config-history-link' }, t('agents.config_history')),
      a.killed
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
