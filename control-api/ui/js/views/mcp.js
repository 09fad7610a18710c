// MCP servers: the tool servers agents reach through `/mcp/agent/{agent}` (GET
// /api/v1/mcp/servers): transport and target, health with why and since when, which agents see
// it, the tools it listed last (and which of them policy or the tool filter hides), and how many
// sessions use it. Header and environment values never reach the browser, only their names.
// Health makes no event of its own, so besides tool-call events the page refreshes every 10 s.

import { h, dl } from '../dom.js';
import { t } from '../i18n.js';
import { listPage } from '../listpage.js';
import { when, ago, usd } from '../format.js';

export function mount(root, ctx) {
  return listPage(root, ctx, {
    title: t('mcp.title'), hint: t('mcp.hint'), testid: 'mcp-servers',
    path: '/api/v1/mcp/servers', key: (s) => s.name, events: ['tool_call'], refresh: 10000,
    empty: [t('mcp.empty'), t('mcp.empty_hint')],
    item: card,
  }).unmount;
}

function card(s) {
  const hl = s.health || {};
  const state = hl.state || 'unknown';
  const target = s.transport === 'stdio' ? [s.command, ...(s.args || [])].filter(Boolean).join(' ') : s.url;
  const names = (list) => (list && list.length ? t('mcp.names_only', { names: list.join(', ') }) : '');
  const since = (iso) => (iso ? t('agents.activity', { ago: ago(iso), time: when(iso) }) : t('common.never'));
  return h('article', { class: 'card mcp-server', 'data-testid': 'mcp-server', 'data-name': s.name, 'data-health': state },
    h('div', { class: 'card-head' },
      h('strong', {}, s.name),
      h('span', { class: 'kind' }, s.transport),
      h('span', { class: `badge health-${state}`, 'data-testid': 'health' }, t(`health.${state}`, {}, state)),
      h('span', { class: 'muted', 'data-testid': 'sessions' }, t('mcp.sessions', { n: s.sessions || 0 }))),
    hl.reason ? h('p', { class: 'health-why', 'data-testid': 'health-reason' }, hl.reason) : null,
    dl([
      [t('mcp.target'), h('code', { 'data-testid': 'target' }, target || '')],
      [t('mcp.headers'), names(s.header_names)],
      [t('mcp.env'), names(s.env_names)],
      [t('mcp.agents'), s.agents && s.agents.length ? s.agents.map((a) => `@${a}`).join(', ') : t('mcp.all_agents')],
      [t('mcp.prefix'), h('code', {}, s.prefix || '')],
      [t('mcp.timeout'), t('mcp.timeout_s', { n: s.timeout_s })],
      [t('mcp.since'), hl.since ? since(hl.since) : ''],
      [t('mcp.last_ok'), since(hl.last_ok)],
    ]),
    tools(s.tools || []));
}

function tools(list) {
  if (!list.length) return h('p', { class: 'muted', 'data-testid': 'no-tools' }, t('mcp.no_tools'));
  const hidden = list.filter((x) => !x.offered).length;
  return h('details', { class: 'mcp-tools', 'data-testid': 'tools' },
    h('summary', {}, t('mcp.tools', { n: list.length, hidden })),
    h('ul', {}, list.map((x) => h('li', { 'data-testid': 'tool', 'data-offered': String(Boolean(x.offered)) },
      h('code', {}, x.prefixed || x.name),
      x.offered ? null : h('span', { class: 'badge health-offline' }, t('mcp.hidden')),
      x.cost_usd != null ? h('span', { class: 'muted' }, ` ${t('mcp.cost', { usd: usd(x.cost_usd) })}`) : null,
      x.description ? h('p', { class: 'muted' }, x.description) : null))));
}
