import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Knex } from 'knex';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';
import { abandonQuarantinedStep, type QuarantinedStep, quarantinedSteps, requeueQuarantinedStep } from '../../../common/protocol/steps.js';
import type { ServerDeps } from '../../types.js';
import { scriptTag } from '../../web/assets.js';
import { raw } from '../../web/html.js';
import { createTicketsStore } from '../tickets/store.js';
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
  maintenance?: { on?: boolean; message?: string | null; retryAfterS?: number; since?: string | null; by?: string | null };
  duplicateNodeIds?: Array<{ id: string; url: string; registeredUrl: string }>;
  servers?: Array<{
    id: string;
    url?: string;
    state?: string;
    load?: number | null;
    inflight?: number;
    version?: string | null;
    agentState?: string | null;
    draining?: boolean;
    weight?: number;
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
  /** Steps whose runs were lost and whose policy stopped them (ADR 0020), from the database. */
  quarantined: { total: number; steps: QuarantinedStep[] };
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

export async function clusterSnapshot(boosters: BoosterClient, knex: Knex): Promise<ClusterSnapshot> {
  const [statuses, quarantined] = await Promise.all([boosters.status(), quarantinedSteps(knex, { limit: 50 })]);
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
  return { boosters: list, counters, events, quarantined, at: Date.now() };
}

const activeOf = (s: ClusterSnapshot) => s.boosters.find((b) => b.status?.role === 'active') ?? s.boosters.find((b) => b.status);

/** A one-button form posting to the cluster page (CSRF token included). */
function button(action: string, csrf: string, label: string, name: string, fields: Record<string, string> = {}) {
  return html`<form method="post" action="${action}" class="inline">${raw(
    Object.entries(fields)
      .map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`.html)
      .join(''),
  )}<input type="hidden" name="csrf" value="${csrf}"><button type="submit" data-action="${name}">${label}</button></form>`;
}

function boostersTable(l: Locale, s: ClusterSnapshot, csrf: string) {
  const hasActive = s.boosters.some((b) => b.status?.role === 'active');
  return html`<table id="boosters-table"><thead><tr><th>${t(l, 'admin.cluster.address')}</th><th>ID</th><th>${t(l, 'admin.cluster.role')}</th><th>${t(l, 'admin.cluster.epoch')}</th><th>${t(l, 'admin.cluster.uptime')}</th><th>${t(l, 'admin.cluster.version')}</th><th>${t(l, 'admin.cluster.license')}</th><th></th></tr></thead><tbody>
  ${s.boosters.map((b) =>
    b.status
      ? html`<tr data-booster="${b.url}"><td>${b.url}</td><td>${b.status.nodeId ?? ''}</td><td data-role="${b.status.role ?? ''}"><strong>${b.status.role ?? ''}</strong></td><td>${b.status.epoch ?? ''}</td><td>${fmtUptime(b.status.uptimeMs)}</td><td>${b.status.version ?? ''}</td><td data-field="license">${b.status.license?.state ?? ''}${typeof b.status.license?.daysLeft === 'number' ? ` (${b.status.license.daysLeft})` : ''}</td>
      <td>${b.status.role === 'standby' && hasActive && b.status.nodeId ? button('/admin/cluster/switchover', csrf, t(l, 'admin.cluster.switchoverTo'), 'switchover', { to: b.status.nodeId }) : ''}</td></tr>`
      : html`<tr data-booster="${b.url}"><td>${b.url}</td><td colspan="7" class="error">${t(l, 'admin.cluster.unreachable')}</td></tr>`,
  )}</tbody></table>`;
}

function maintenanceBox(l: Locale, s: ClusterSnapshot, csrf: string) {
  const m = activeOf(s)?.status?.maintenance;
  const state = m?.on
    ? html`<p class="error" id="maintenance-state" data-on="true">${t(l, 'admin.cluster.maintenanceOn', { since: fmtTime(m.since), by: m.by ?? '' })}${m.message ? html`<br><q>${m.message}</q>` : ''}</p>`
    : html`<p id="maintenance-state" data-on="false">${t(l, 'admin.cluster.maintenanceOff')}</p>`;
  const form = m?.on
    ? button('/admin/cluster/maintenance', csrf, t(l, 'admin.cluster.maintenanceEnd'), 'maintenance-off', { on: 'false' })
    : html`<form method="post" action="/admin/cluster/maintenance"><input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="on" value="true">
      <label for="maintenance-message">${t(l, 'admin.cluster.maintenanceMessage')}</label><textarea id="maintenance-message" name="message" rows="2" maxlength="500"></textarea>
      <label for="maintenance-retry">${t(l, 'admin.cluster.maintenanceRetry')}</label><input id="maintenance-retry" name="retryAfterS" type="number" min="1" max="86400" value="120">
      <p><button type="submit" data-action="maintenance-on">${t(l, 'admin.cluster.maintenanceStart')}</button></p></form>`;
  return html`${state}${form}`;
}

function duplicatesBox(l: Locale, s: ClusterSnapshot) {
  const dups = activeOf(s)?.status?.duplicateNodeIds ?? [];
  if (!dups.length) return '';
  return html`<div id="duplicates" class="error" role="alert"><strong>${t(l, 'admin.cluster.duplicates')}</strong><ul>${dups.map((d) => html`<li data-server="${d.id}">${d.id}: ${d.url} ≠ ${d.registeredUrl}</li>`)}</ul></div>`;
}

function quarantinedTable(l: Locale, s: ClusterSnapshot, csrf: string) {
  const q = s.quarantined;
  if (!q.total) return html`<p id="quarantined-none">${t(l, 'admin.cluster.quarantinedNone')}</p>`;
  return html`<p>${t(l, 'admin.cluster.quarantinedHelp', { total: q.total })}</p><table id="quarantined-table"><thead><tr><th>${t(l, 'admin.cluster.ticket')}</th><th>${t(l, 'admin.cluster.step')}</th><th>${t(l, 'admin.cluster.reason')}</th><th>${t(l, 'admin.cluster.lostRuns')}</th><th>${t(l, 'admin.cluster.server')}</th><th>${t(l, 'admin.cluster.when')}</th><th></th></tr></thead><tbody>
  ${q.steps.map(
    (
      x,
    ) => html`<tr data-step="${x.id}"><td><a href="/tickets/${x.ticketId}">${x.ticketNo ?? x.ticketId}</a></td><td>${x.stepKey} <small class="muted">(${x.stepType})</small></td><td>${t(l, `admin.cluster.reason.${x.reason}`)}</td><td>${x.lostRuns} / ${x.maxRuns}</td><td>${x.lastServer ?? ''}</td><td>${fmtTime(x.since)}</td>
    <td>${button(`/admin/cluster/steps/${x.id}/requeue`, csrf, t(l, 'admin.cluster.requeue'), 'requeue')} ${button(`/admin/cluster/steps/${x.id}/fail`, csrf, t(l, 'admin.cluster.failTicket'), 'fail')}</td></tr>`,
  )}</tbody></table>`;
}

function serversTable(l: Locale, s: ClusterSnapshot, csrf: string) {
  const servers = activeOf(s)?.status?.servers ?? [];
  return html`<table id="servers-table"><thead><tr><th>${t(l, 'admin.cluster.server')}</th><th>${t(l, 'admin.cluster.state')}</th><th>${t(l, 'admin.cluster.load')}</th><th>${t(l, 'admin.cluster.inflight')}</th><th>${t(l, 'admin.cluster.version')}</th><th>${t(l, 'admin.cluster.agent')}</th><th>${t(l, 'admin.cluster.draining')}</th><th>${t(l, 'admin.cluster.weight')}</th><th></th></tr></thead><tbody>
  ${servers.map((v) => {
    const base = `/admin/cluster/servers/${encodeURIComponent(v.id)}`;
    return html`<tr data-server="${v.id}"><td>${v.id}<br><small class="muted">${v.url ?? ''}</small></td>
    <td data-field="state">${v.state ?? ''}${v.routed === false ? html`<br><small class="error">${v.reason ?? ''}</small>` : ''}</td>
    <td>${typeof v.load === 'number' ? v.load.toFixed(2) : '-'}</td><td>${v.inflight ?? 0}</td><td>${v.version ?? '-'}</td><td>${v.agentState ?? '-'}</td>
    <td data-field="draining">${v.draining ? '✔' : ''}</td>
    <td><form method="post" action="${base}/weight" class="inline"><input type="hidden" name="csrf" value="${csrf}"><input name="weight" type="number" min="1" max="1000" value="${v.weight ?? 100}" aria-label="${t(l, 'admin.cluster.weight')}" data-field="weight"><button type="submit" data-action="weight">${t(l, 'admin.cluster.setWeight')}</button></form></td>
    <td>${button(`${base}/${v.draining ? 'undrain' : 'drain'}`, csrf, t(l, v.draining ? 'admin.cluster.undrain' : 'admin.cluster.drain'), v.draining ? 'undrain' : 'drain')}
      ${v.state === 'down' ? button(`${base}/retire`, csrf, t(l, 'admin.cluster.retire'), 'retire') : ''}</td></tr>`;
  })}
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
    const csrf = request.session?.csrfToken ?? '';
    return {
      boosters: boostersTable(l, s, csrf).html,
      maintenance: maintenanceBox(l, s, csrf).html,
      servers: html`${duplicatesBox(l, s)}${serversTable(l, s, csrf)}`.html,
      quarantined: quarantinedTable(l, s, csrf).html,
      events: eventsTable(l, s).html,
    };
  };

  const snapshot = () => clusterSnapshot(boosters, ctx.deps.db.knex);
  const tickets = createTicketsStore(ctx.deps.db.knex);

  app.get('/admin/cluster', { preHandler: [requireAdmin] }, async (request, reply) => {
    const l = localeOf(request);
    const q = request.query as Form;
    const s = await snapshot();
    const f = fragments(request, s);
    const body = html`
      ${boosters.urls.length ? '' : errorBox(t(l, 'admin.cluster.noBooster'))}
      ${q.error ? errorBox(t(l, 'admin.cluster.refused', { id: q.id ?? '', message: q.message ?? '' }), q.error) : ''}
      <section class="card"><h2>${t(l, 'admin.cluster.boosters')}</h2><div id="boosters-box">${raw(f.boosters)}</div></section>
      <section class="card"><h2>${t(l, 'admin.cluster.maintenance')}</h2><div id="maintenance-box">${raw(f.maintenance)}</div></section>
      <section class="card"><h2>${t(l, 'admin.cluster.servers')}</h2><div id="servers-box">${raw(f.servers)}</div></section>
      <section class="card"><h2>${t(l, 'admin.cluster.quarantined')}</h2><div id="quarantined-box">${raw(f.quarantined)}</div></section>
      <section class="card"><h2>${t(l, 'admin.cluster.charts')}</h2><div id="charts" data-label-rps="${t(l, 'admin.cluster.rps')}" data-label-lat="${t(l, 'admin.cluster.latency')}" data-poll-ms="${ctx.pollMs}"></div></section>
      <section class="card"><h2>${t(l, 'admin.cluster.events')}</h2><div id="events-box">${raw(f.events)}</div></section>
      ${scriptTag('cluster-page.js')}`;
    const notice = q.done ? t(l, `admin.cluster.done.${q.done}`, { id: q.id ?? '' }) : undefined;
    return sendPage(request, reply, { title: t(l, 'admin.cluster.title'), body, notice });
  });

  app.get('/admin/cluster/data', { preHandler: [requireAdmin] }, async (request, reply) => {
    const s = await snapshot();
    return reply
      .header('cache-control', 'no-store')
      .send({ at: s.at, counters: s.counters, boosters: s.boosters, events: s.events, quarantined: s.quarantined, html: fragments(request, s) });
  });

  /** Back to the page with what happened: a notice, or the booster's code and message. */
  const outcome = (reply: FastifyReply, done: string, id: string, r: BoosterReply | null) => {
    const refused = r && !r.ok ? ((r.body as { code?: string; message?: string } | null) ?? {}) : null;
    const query = refused
      ? new URLSearchParams({ error: refused.code ?? `HTTP ${r?.status || 'no answer'}`, message: refused.message ?? r?.error ?? '', id })
      : new URLSearchParams({ done, id });
    return reply.redirect(`/admin/cluster?${query}`, 303);
  };
  const by = (request: FastifyRequest) => `admin:${request.user?.username ?? ''}`;

  app.post('/admin/cluster/servers/:id/:action', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const { id, action } = request.params as { id: string; action: string };
    const form = (request.body ?? {}) as Form;
    let r: BoosterReply;
    if (action === 'drain') r = await boosters.drain(id, by(request), form.reason || undefined);
    else if (action === 'undrain') r = await boosters.undrain(id, by(request));
    else if (action === 'weight') r = await boosters.weight(id, Number(form.weight), by(request));
    else if (action === 'retire') r = await boosters.retire(id, by(request));
    else return reply.code(404).send({ code: 'SERVER_ERR_NOT_FOUND', message: 'unknown action' });
    ctx.deps.log.info({ serverId: id, action, by: request.user?.username, booster: r.url, status: r.status }, 'admin server command');
    return outcome(reply, action, id, r);
  });

  app.post('/admin/cluster/switchover', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const to = String(((request.body ?? {}) as Form).to ?? '');
    const r = await boosters.switchover(to, by(request));
    ctx.deps.log.info({ to, by: request.user?.username, booster: r.url, status: r.status }, 'admin switchover');
    return outcome(reply, 'switchover', to, r);
  });

  app.post('/admin/cluster/maintenance', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const form = (request.body ?? {}) as Form;
    const on = form.on === 'true';
    const retryAfterS = form.retryAfterS ? Number(form.retryAfterS) : undefined;
    const r = await boosters.maintenance({
      on,
      by: by(request),
      ...(on && form.message?.trim() ? { message: form.message.trim() } : {}),
      ...(on ? { retryAfterS } : {}),
    });
    ctx.deps.log.info({ on, by: request.user?.username, booster: r.url, status: r.status }, 'admin maintenance mode');
    return outcome(reply, on ? 'maintenanceOn' : 'maintenanceOff', '', r);
  });

  // Quarantined steps (ADR 0020): the server's own rows, so the page acts on the database itself.
  app.post('/admin/cluster/steps/:id/:action', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const { id, action } = request.params as { id: string; action: string };
    const stepId = Number(id);
    if (!Number.isSafeInteger(stepId) || (action !== 'requeue' && action !== 'fail'))
      return reply.code(404).send({ code: 'SERVER_ERR_NOT_FOUND', message: 'unknown action' });
    const { db, nodeId } = ctx.deps;
    const [step] = (await quarantinedSteps(db.knex, { stepId })).steps;
    let done = false;
    if (step) {
      const history = (action: string) => [
        {
          ticketId: step.ticketId,
          step: step.stepKey,
          action,
          actorId: request.user?.id ?? null,
          nodeId,
          output: { stepId, reason: step.reason, lostRuns: step.lostRuns },
        },
      ];
      done = await db.transaction(async (trx) => {
        if (action === 'requeue') {
          if (!(await requeueQuarantinedStep(trx, stepId))) return false;
          await tickets.addHistory(trx, history('step.requeued'));
          return true;
        }
        if (!(await abandonQuarantinedStep(trx, stepId, by(request)))) return false;
        // The ticket fails only if it still waits at that step.
        if (await tickets.failAtStep(trx, step.ticketId, step.stepKey)) await tickets.addHistory(trx, history('step.failed'));
        return true;
      });
    }
    ctx.deps.log.info({ stepId, action, by: request.user?.username, done }, 'admin quarantined step');
    if (!done) return reply.redirect(`/admin/cluster?${new URLSearchParams({ error: 'SERVER_ERR_NOT_FOUND', message: 'not quarantined', id })}`, 303);
    return outcome(reply, action === 'requeue' ? 'requeued' : 'failed', step?.ticketNo ?? id, null);
  });
}
