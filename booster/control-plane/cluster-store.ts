import type { Knex } from 'knex';
import { getHelpers } from '../../common/db/helpers/index.js';
import { deleteBatch } from '../../common/db/purge.js';
import { CommonErrors, isOmflowError } from '../../common/errors.js';
import type { AgentState, Heartbeat } from '../../common/protocol/messages.js';
import { quarantinedSteps } from '../../common/protocol/steps.js';

/** A read the 1 s refresh makes (servers rows, cluster switches) that the database has not answered in this long has failed; the next refresh tries again. */
const SERVER_READ_TIMEOUT_MS = 5000;

/** What the booster keeps in the shared database: servers, booster nodes, the event log. */
export interface ServerRow {
  id: string;
  url: string;
  agentUrl: string | null;
  version: string | null;
  agentState: AgentState | null;
  draining: boolean;
  drainReason: string | null;
  weight: number;
}

export interface EventRow {
  id: number;
  boosterId: string;
  epoch: number;
  kind: string;
  subject: string | null;
  details: unknown;
  createdAt: string;
}

function isUnique(err: unknown): boolean {
  return isOmflowError(err) && err.code === CommonErrors.COMMON_ERR_DB_UNIQUE.code;
}

export class ClusterStore {
  constructor(private readonly knex: Knex) {}

  async loadServers(): Promise<ServerRow[]> {
    const h = getHelpers(this.knex);
    // Bounded: ServerSync reads one at a time, so a read the database never answers would stop every later one.
    const rows = await this.knex('servers')
      .select('id', 'url', 'agent_url', 'version', 'agent_state', 'draining', 'drain_reason', 'weight')
      .timeout(SERVER_READ_TIMEOUT_MS);
    return rows.map((r) => ({
      id: r.id,
      url: r.url,
      agentUrl: r.agent_url ?? null,
      version: r.version ?? null,
      agentState: r.agent_state ?? null,
      draining: h.toBool(r.draining),
      drainReason: r.drain_reason ?? null,
      weight: Number(r.weight) || 100,
    }));
  }

  /** Registers or refreshes a server from its heartbeat. */
  async saveHeartbeat(hb: Heartbeat): Promise<void> {
    const h = getHelpers(this.knex);
    const load = JSON.stringify({
      inflight: hb.inflight,
      runningSteps: hb.runningSteps,
      stepCapacity: hb.stepCapacity,
      cpu: hb.cpu,
      eventLoopLagMs: hb.eventLoopLagMs,
    });
    const fields = {
      url: hb.url,
      agent_url: hb.agentUrl ?? null,
      version: hb.version.slice(0, 64),
      last_load: load,
      last_heartbeat_at: h.now(),
      updated_at: h.now(),
    };
    const n = await this.knex('servers').where('id', hb.nodeId).update(fields);
    if (Number(n) > 0) return;
    try {
      await this.knex('servers').insert({ id: hb.nodeId, ...fields, draining: false, weight: 100, registered_at: h.now() });
    } catch (err) {
      if (!isUnique(err)) throw err;
      await this.knex('servers').where('id', hb.nodeId).update(fields);
    }
  }

  async setDraining(id: string, draining: boolean, reason: string | null): Promise<boolean> {
    const h = getHelpers(this.knex);
    const n = await this.knex('servers')
      .where('id', id)
      .update({ draining, drain_reason: draining ? (reason?.slice(0, 255) ?? null) : null, updated_at: h.now() });
    return Number(n) === 1;
  }

  async setWeight(id: string, weight: number): Promise<boolean> {
    const h = getHelpers(this.knex);
    const n = await this.knex('servers').where('id', id).update({ weight, updated_at: h.now() });
    return Number(n) === 1;
  }

  /**
   * Deletes a server's row unless it heartbeated within `liveMs` (database clock): 'retired',
   * 'live' or 'unknown'. One conditional DELETE, so a heartbeat written meanwhile keeps the row.
   */
  async retireServer(id: string, liveMs: number): Promise<'retired' | 'live' | 'unknown'> {
    const h = getHelpers(this.knex);
    const n = await this.knex('servers')
      .where('id', id)
      .andWhere((q) => q.whereNull('last_heartbeat_at').orWhere('last_heartbeat_at', '<', h.nowPlusMs(-liveMs)))
      .del();
    if (Number(n) === 1) return 'retired';
    return (await this.knex('servers').where('id', id).first('id')) ? 'live' : 'unknown';
  }

  /** A cluster-wide switch (booster_state), or null when never set. */
  async readState<T>(name: string): Promise<{ value: T | null; by: string | null; at: string } | null> {
    const h = getHelpers(this.knex);
    const r = await this.knex('booster_state').where('name', name).first('value', 'updated_by', 'updated_at').timeout(SERVER_READ_TIMEOUT_MS);
    if (!r) return null;
    return { value: h.fromJson<T>(r.value), by: r.updated_by ?? null, at: h.toDate(r.updated_at)!.toISOString() };
  }

  async writeState(name: string, value: unknown, by: string): Promise<void> {
    const h = getHelpers(this.knex);
    const fields = { value: JSON.stringify(value), updated_by: by.slice(0, 128), updated_at: h.now() };
    const n = await this.knex('booster_state').where('name', name).update(fields);
    if (Number(n) > 0) return;
    try {
      await this.knex('booster_state').insert({ name, ...fields });
    } catch (err) {
      if (!isUnique(err)) throw err;
      await this.knex('booster_state').where('name', name).update(fields);
    }
  }

  async setAgentState(id: string, state: AgentState, agentUrl: string, version: string | null): Promise<boolean> {
    const h = getHelpers(this.knex);
    const fields: Record<string, unknown> = { agent_state: state, agent_url: agentUrl, updated_at: h.now() };
    if (version) fields.version = version.slice(0, 64);
    const n = await this.knex('servers').where('id', id).update(fields);
    return Number(n) === 1;
  }

  async recordEvent(ev: { boosterId: string; epoch: number; kind: string; subject?: string | null; details?: unknown }): Promise<void> {
    const h = getHelpers(this.knex);
    await this.knex('booster_events').insert({
      booster_id: ev.boosterId,
      epoch: ev.epoch,
      kind: ev.kind,
      subject: ev.subject?.slice(0, 128) ?? null,
      details: ev.details === undefined ? null : JSON.stringify(ev.details),
      created_at: h.now(),
    });
  }

  /** Retention: one batch of events older than `olderThanMs`. */
  purgeEvents(olderThanMs: number, limit: number): Promise<number> {
    const h = getHelpers(this.knex);
    return deleteBatch(this.knex, 'booster_events', (q) => q.where('created_at', '<', h.nowPlusMs(-olderThanMs)), limit);
  }

  async recentEvents(limit: number): Promise<EventRow[]> {
    const h = getHelpers(this.knex);
    const rows = await this.knex('booster_events').select('*').orderBy('id', 'desc').limit(limit);
    return rows.map((r) => ({
      id: Number(r.id),
      boosterId: r.booster_id,
      epoch: Number(r.epoch),
      kind: r.kind,
      subject: r.subject ?? null,
      details: h.fromJson(r.details),
      createdAt: h.toDate(r.created_at)!.toISOString(),
    }));
  }

  async upsertNode(node: { id: string; url: string; role: string; epoch: number; pid: number; version: string | null; started: boolean }): Promise<void> {
    const h = getHelpers(this.knex);
    const fields: Record<string, unknown> = { url: node.url, role: node.role, epoch: node.epoch, pid: node.pid, version: node.version, last_seen_at: h.now() };
    if (node.started) fields.started_at = h.now();
    const n = await this.knex('booster_nodes').where('id', node.id).update(fields);
    if (Number(n) > 0) return;
    try {
      await this.knex('booster_nodes').insert({ id: node.id, ...fields, started_at: h.now() });
    } catch (err) {
      if (!isUnique(err)) throw err;
    }
  }

  async listNodes(): Promise<
    { id: string; url: string; role: string; epoch: number; pid: number | null; version: string | null; startedAt: string; lastSeenAt: string }[]
  > {
    const h = getHelpers(this.knex);
    const rows = await this.knex('booster_nodes').select('*').orderBy('id');
    return rows.map((r) => ({
      id: r.id,
      url: r.url,
      role: r.role,
      epoch: Number(r.epoch),
      pid: r.pid === null ? null : Number(r.pid),
      version: r.version ?? null,
      startedAt: h.toDate(r.started_at)!.toISOString(),
      lastSeenAt: h.toDate(r.last_seen_at)!.toISOString(),
    }));
  }

  /** Steps whose policy stopped them after lost runs, for `omflow status` (ADR 0020). */
  quarantinedSteps(limit: number): ReturnType<typeof quarantinedSteps> {
    return quarantinedSteps(this.knex, { limit });
  }

  /** The newest rollout and its nodes (written by the agents), for `omflow status`. */
  async latestRollout(): Promise<unknown> {
    const h = getHelpers(this.knex);
    const r = await this.knex('rollouts').select('id', 'version', 'state', 'halted_reason', 'started_at', 'finished_at').orderBy('id', 'desc').first();
    if (!r) return null;
    const nodes = await this.knex('rollout_nodes')
      .select('server_id', 'state', 'from_version', 'to_version', 'error')
      .where('rollout_id', r.id)
      .orderBy('server_id');
    return {
      id: Number(r.id),
      version: r.version,
      state: r.state,
      haltedReason: r.halted_reason ?? null,
      startedAt: h.toDate(r.started_at)?.toISOString() ?? null,
      finishedAt: h.toDate(r.finished_at)?.toISOString() ?? null,
      nodes: nodes.map((n) => ({
        serverId: n.server_id,
        state: n.state,
        fromVersion: n.from_version ?? null,
        toVersion: n.to_version,
        error: n.error ?? null,
      })),
    };
  }
}
