import type { FastifyInstance, FastifyRequest } from 'fastify';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';
import type { ServerDeps } from '../../types.js';
import { scriptTag } from '../../web/assets.js';
import { raw } from '../../web/html.js';
import { requireAdmin, verifyCsrf } from '../users/guards.js';
import type { BoosterClient, BoosterReply } from './booster-client.js';
import { errorBox, type Form, fmtTime, html, type Locale, localeOf, sendPage, t } from './shared.js';

/** What the dashboard reads from GET /_booster/status (tolerant: unknown fields are ignored). */
interface BoosterStatus {
  nodeId?: string;
  role?: string;
  epoch?: number;
  url?: string;
  version?: string | null;
  uptimeMs?: number;
  license?: { state?: string; daysLeft?: number | null };
  servers?: Array<{
    id: string;
    url?: string;
    state?: string;
    load?: number | null;
    inflight?: number;
    version?: string | null;
    agentState?: string | null;
    draining?: boolean;
    routed?: boolean;
    reason?: string | null;
    runningSteps?: number | null;
    stepCapacity?: number | null;
  }>;
}

interface EventRow {
  id: number;
  boosterId?: string;
  epoch?: number;
  kind: string;
  subject?: string | null;
  details?: unknown;
  createdAt?: string;
}

export interface ClusterSnapshot {
  boosters: Array<{ url: string; reachable: boolean; status: BoosterStatus | null }>;
  /** Per server: cumulative request count and latency sum/count from the active booster's metrics. */
  counters: Record<string, { requests: number; latencySum: number; latencyCount: number }>;
  events: EventRow[];
  at: number;
}

function fmtUptime(ms: number | undefined): string {
  if (ms === undefined) return '-';
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d ? `${d}d ${h}h ${m}m` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
}

/** Sums Prometheus text samples by the `server` label. */
export function parseServerCounters(text: string): ClusterSnapshot['counters'] {
  const out: ClusterSnapshot['counters'] = {};
  const get = (id: string) => (out[id] ??= { requests: 0, latencySum: 0, latencyCount: 0 });
  for (const line of text.split('\n')) {
    const m =
      /^(omflow_booster_requests_total|omflow_booster_request_duration_seconds_sum|omflow_booster_request_duration_seconds_count)\{([^}]*)\}\s+([0-9.eE+-]+)/.exec(
        line,
      );
    if (!m) continue;
    const server = /(?:^|,)server="((?:[^"\\]|\\.)*)"/.exec(m[2])?.[1];
    if (!server) continue;
    const v = Number(m[3]);
    if (m[1] === 'omflow_booster_requests_total') get(server).requests += v;
    else if (m[1].endsWith('_sum')) get(server).latencySum += v;
    else get(server).latencyCount += v;
  }
  return out;
}

export async function clusterSnapshot(boosters: BoosterClient): Promise<ClusterSnapshot> {
  const statuses = await boosters.status();
  const list = statuses.map((r: BoosterReply) => ({ url: r.url, reachable: r.ok, status: r.ok ? (r.body as BoosterStatus) : null }));
  const active = list.find((b) => b.status?.role === 'active') ?? list.find((b) => b.reachable);
  let counters: ClusterSnapshot['counters'] = {};
  let events: EventRow[] = [];
  if (active) {
    const [metrics, ev] = await Promise.all([
      boosters.call(active.url, 'GET', BOOSTER_PATH.metrics),
      boosters.call(active.url, 'GET', `${BOOSTER_PATH.events}?limit=30`),
    ]);
    if (metrics.ok && typeof metrics.body === 'string') counters = parseServerCounters(metrics.body);
    if (ev.ok) events = ((ev.body as { events?: EventRow[] })?.events ?? []).slice(0, 30);
  }
  return { boosters: list, counters, events, at: Date.now() };
}

function boostersTable(l: Locale, s: ClusterSnapshot) {
  return html`<table id="boosters-table"><thead><tr><th>${t(l, 'admin.cluster.address')}</th><th>ID</th><th>${t(l, 'admin.cluster.role')}</th><th>${t(l, 'admin.cluster.epoch')}</th><th>${t(l, 'admin.cluster.uptime')}</th><th>${t(l, 'admin.cluster.version')}</th><th>${t(l, 'admin.cluster.license')}</th></tr></thead><tbody>
  ${s.boosters.map((b) =>
    b.status
      ? html`<tr data-booster="${b.url}"><td>${b.url}</td><td>${b.status.nodeId ?? ''}</td><td data-role="${b.status.role ?? ''}"><strong>${b.status.role ?? ''}</strong></td><td>${b.status.epoch ?? ''}</td><td>${fmtUptime(b.status.uptimeMs)}</td><td>${b.status.version ?? ''}</td><td data-field="license">${b.status.license?.state ?? ''}${typeof b.status.license?.daysLeft === 'number' ? ` (${b.status.license.daysLeft})` : ''}</td></tr>`
      : html`<tr data-booster="${b.url}"><td>${b.url}</td><td colspan="6" class="error">${t(l, 'admin.cluster.unreachable')}</td></tr>`,
  )}</tbody></table>`;
}

function serversTable(l: Locale, s: ClusterSnapshot, csrf: string) {
  const active = s.boosters.find((b) => b.status?.role === 'active') ?? s.boosters.find((b) => b.status);
  const servers = active?.status?.servers ?? [];
  return html`<table id="servers-table"><thead><tr><th>${t(l, 'admin.cluster.server')}</th><th>${t(l, 'admin.cluster.state')}</th><th>${t(l, 'admin.cluster.load')}</th><th>${t(l, 'admin.cluster.inflight')}</th><th>${t(l, 'admin.cluster.version')}</th><th>${t(l, 'admin.cluster.agent')}</th><th>${t(l, 'admin.cluster.draining')}</th><th></th></tr></thead><tbody>
  ${servers.map(
    (v) => html`<tr data-server="${v.id}"><td>${v.id}<br><small class="muted">${v.url ?? ''}</small></td>
    <td data-field="state">${v.state ?? ''}${v.routed === false ? html`<br><small class="error">${v.reason ?? ''}</small>` : ''}</td>
    <td>${typeof v.load === 'number' ? v.load.toFixed(2) : '-'}</td><td>${v.inflight ?? 0}</td><td>${v.version ?? '-'}</td><td>${v.agentState ?? '-'}</td>
    <td data-field="draining">${v.draining ? '✔' : ''}</td>
    <td><form method="post" action="/admin/cluster/servers/${encodeURIComponent(v.id)}/${v.draining ? 'undrain' : 'drain'}"><input type="hidden" name="csrf" value="${csrf}">
      <button type="submit" data-action="${v.draining ? 'undrain' : 'drain'}">${t(l, v.draining ? 'admin.cluster.undrain' : 'admin.cluster.drain')}</button></form></td></tr>`,
  )}
  </tbody></table>`;
}

function eventsTable(l: Locale, s: ClusterSnapshot) {
  return html`<table id="events-table"><thead><tr><th>${t(l, 'admin.cluster.when')}</th><th>Booster</th><th>${t(l, 'admin.cluster.kind')}</th><th>${t(l, 'admin.cluster.subject')}</th><th>${t(l, 'admin.cluster.details')}</th></tr></thead><tbody>
  ${s.events.map((e) => html`<tr><td>${fmtTime(e.createdAt)}</td><td>${e.boosterId ?? ''}</td><td>${e.kind}</td><td>${e.subject ?? ''}</td><td><small>${e.details ? JSON.stringify(e.details).slice(0, 200) : ''}</small></td></tr>`)}
  </tbody></table>`;
}

export async function clusterPage(app: FastifyInstance, ctx: { deps: ServerDeps; boosters: BoosterClient; pollMs: number }): Promise<void> {
  const { boosters } = ctx;
  const fragments = (request: FastifyRequest, s: ClusterSnapshot) => {
    const l = localeOf(request);
    return { boosters: boostersTable(l, s).html, servers: serversTable(l, s, request.session?.csrfToken ?? '').html, events: eventsTable(l, s).html };
  };

  app.get('/admin/cluster', { preHandler: [requireAdmin] }, async (request, reply) => {
    const l = localeOf(request);
    const q = request.query as Form;
    const s = await clusterSnapshot(boosters);
    const f = fragments(request, s);
    const body = html`
      ${boosters.urls.length ? '' : errorBox(t(l, 'admin.cluster.noBooster'))}
      ${q.error ? errorBox(t(l, 'admin.cluster.actionFailed', { id: q.error })) : ''}
      <section class="card"><h2>${t(l, 'admin.cluster.boosters')}</h2><div id="boosters-box">${raw(f.boosters)}</div></section>
      <section class="card"><h2>${t(l, 'admin.cluster.servers')}</h2><div id="servers-box">${raw(f.servers)}</div></section>
      <section class="card"><h2>${t(l, 'admin.cluster.charts')}</h2><div id="charts" data-label-rps="${t(l, 'admin.cluster.rps')}" data-label-lat="${t(l, 'admin.cluster.latency')}" data-poll-ms="${ctx.pollMs}"></div></section>
      <section class="card"><h2>${t(l, 'admin.cluster.events')}</h2><div id="events-box">${raw(f.events)}</div></section>
      ${scriptTag('cluster-page.js')}`;
    const notice = q.drained
      ? t(l, 'admin.cluster.drained', { id: q.drained })
      : q.undrained
        ? t(l, 'admin.cluster.undrained', { id: q.undrained })
        : undefined;
    return sendPage(request, reply, { title: t(l, 'admin.cluster.title'), body, notice });
  });

  app.get('/admin/cluster/data', { preHandler: [requireAdmin] }, async (request, reply) => {
    const s = await clusterSnapshot(boosters);
    return reply
      .header('cache-control', 'no-store')
      .send({ at: s.at, counters: s.counters, boosters: s.boosters, events: s.events, html: fragments(request, s) });
  });

  app.post('/admin/cluster/servers/:id/:action', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const { id, action } = request.params as { id: string; action: string };
    if (action !== 'drain' && action !== 'undrain') return reply.code(404).send({ code: 'SERVER_ERR_NOT_FOUND', message: 'unknown action' });
    const replies = action === 'drain' ? await boosters.drain(id, `admin ${request.user?.username ?? ''}`.trim()) : await boosters.undrain(id);
    const ok = replies.some((r) => r.ok);
    ctx.deps.log.info({ serverId: id, action, by: request.user?.username, accepted: replies.filter((r) => r.ok).map((r) => r.url) }, 'admin drain request');
    return reply.redirect(`/admin/cluster?${ok ? `${action}ed` : 'error'}=${encodeURIComponent(id)}`, 303);
  });
}
