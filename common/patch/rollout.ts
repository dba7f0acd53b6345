import type { Database } from '../db/create-database.js';
import { getHelpers } from '../db/helpers/index.js';
import { isOmflowError } from '../errors.js';
import { PatchErrors } from './errors.js';

/**
 * Rollout state in the database, shared by agents (which act on it), `omflow patch` and the
 * admin Patches page (which read it and take operator actions).
 *
 * rollouts.state: active → (halted ⇄ active) | rolling_back → rolled_back | superseded (a newer patch)
 * rollout_nodes.state: pending, staged, installing, soaking, done, failed, reverted, refused,
 *                      rolling_back, rolled_back
 */
export const ROLLOUT_STATES = ['active', 'halted', 'rolling_back', 'rolled_back', 'superseded'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
export const NODE_STATES = ['pending', 'staged', 'installing', 'soaking', 'done', 'failed', 'reverted', 'refused', 'rolling_back', 'rolled_back'] as const;
export type RolloutNodeState = (typeof NODE_STATES)[number];

export interface RolloutNode {
  serverId: string;
  state: RolloutNodeState;
  fromVersion: string | null;
  toVersion: string;
  error: string | null;
  updatedAt: Date | null;
}

export interface Rollout {
  id: number;
  patchId: number;
  version: string;
  sequence: number;
  state: RolloutState;
  parallelism: number;
  haltedReason: string | null;
  startedAt: Date | null;
  updatedAt: Date | null;
  finishedAt: Date | null;
  nodes: RolloutNode[];
}

async function nodesOf(db: Database, rolloutId: number): Promise<RolloutNode[]> {
  const h = getHelpers(db.knex);
  const rows = await db.knex('rollout_nodes').where({ rollout_id: rolloutId }).orderBy('server_id');
  return rows.map((r: Record<string, unknown>) => ({
    serverId: String(r.server_id),
    state: r.state as RolloutNodeState,
    fromVersion: (r.from_version as string) ?? null,
    toVersion: String(r.to_version),
    error: (r.error as string) ?? null,
    updatedAt: h.toDate(r.updated_at),
  }));
}

async function rowToRollout(db: Database, r: Record<string, unknown>): Promise<Rollout> {
  const h = getHelpers(db.knex);
  return {
    id: Number(r.id),
    patchId: Number(r.patch_id),
    version: String(r.version),
    sequence: Number(r.sequence),
    state: r.state as RolloutState,
    parallelism: Number(r.parallelism),
    haltedReason: (r.halted_reason as string) ?? null,
    startedAt: h.toDate(r.started_at),
    updatedAt: h.toDate(r.updated_at),
    finishedAt: h.toDate(r.finished_at),
    nodes: await nodesOf(db, Number(r.id)),
  };
}

const rolloutQuery = (db: Database) => db.knex('rollouts as r').join('patches as p', 'p.id', 'r.patch_id').select('r.*', 'p.sequence as sequence');

/** The newest rollout (any state), with its nodes; null when no patch was ever applied. */
export async function getLatestRollout(db: Database): Promise<Rollout | null> {
  const r = await rolloutQuery(db).orderBy('r.id', 'desc').first();
  return r ? rowToRollout(db, r) : null;
}

export async function getRollout(db: Database, id: number): Promise<Rollout> {
  const r = await rolloutQuery(db).where('r.id', id).first();
  if (!r) throw PatchErrors.AGENT_ERR_PATCH_NOT_FOUND(`rollout ${id} does not exist`);
  return rowToRollout(db, r);
}

export async function listRollouts(db: Database, limit = 10): Promise<Rollout[]> {
  const rows = await rolloutQuery(db).orderBy('r.id', 'desc').limit(limit);
  return Promise.all(rows.map((r: Record<string, unknown>) => rowToRollout(db, r)));
}

export interface NodeView {
  serverId: string;
  /** From the servers registry (heartbeats / agent reports), when the booster keeps it. */
  version: string | null;
  agentState: string | null;
  rolloutState: RolloutNodeState | null;
  error: string | null;
}

/** Per-node view for `omflow patch status` and the admin page: registry joined with the latest rollout. */
export async function rolloutStatus(db: Database): Promise<{ rollout: Rollout | null; nodes: NodeView[] }> {
  const rollout = await getLatestRollout(db);
  const servers = (await db.knex('servers').select('id', 'version', 'agent_state').orderBy('id')) as {
    id: string;
    version: string | null;
    agent_state: string | null;
  }[];
  const byId = new Map<string, NodeView>();
  for (const s of servers) byId.set(s.id, { serverId: s.id, version: s.version, agentState: s.agent_state, rolloutState: null, error: null });
  for (const n of rollout?.nodes ?? []) {
    const v = byId.get(n.serverId) ?? { serverId: n.serverId, version: null, agentState: null, rolloutState: null, error: null };
    v.rolloutState = n.state;
    v.error = n.error;
    if (v.version === null && n.state === 'done') v.version = n.toVersion;
    byId.set(n.serverId, v);
  }
  return { rollout, nodes: [...byId.values()].sort((a, b) => a.serverId.localeCompare(b.serverId)) };
}

async function transition(db: Database, id: number | undefined, from: RolloutState[], to: RolloutState, extra: Record<string, unknown> = {}): Promise<Rollout> {
  const h = getHelpers(db.knex);
  const target = id ?? (await getLatestRollout(db))?.id;
  if (target === undefined) throw PatchErrors.AGENT_ERR_PATCH_NOT_FOUND('no rollout exists');
  const n = await db
    .knex('rollouts')
    .where({ id: target })
    .whereIn('state', from)
    .update({ state: to, updated_at: h.now(), ...extra });
  if (n !== 1) {
    const current = await getRollout(db, target);
    if (current.state === to) return current;
    throw PatchErrors.AGENT_ERR_ROLLOUT_STATE(`rollout ${target} is ${current.state}; ${to} needs ${from.join(' or ')}`, { state: current.state });
  }
  return getRollout(db, target);
}

/** Operator (or a failing node): no node starts installing this rollout any more. */
export function haltRollout(db: Database, id?: number, reason = 'halted by an operator'): Promise<Rollout> {
  return transition(db, id, ['active', 'rolling_back'], 'halted', { halted_reason: reason.slice(0, 2000) });
}

/** Operator: continue a halted rollout; failed nodes get another try. */
export async function resumeRollout(db: Database, id?: number): Promise<Rollout> {
  const r = await transition(db, id, ['halted'], 'active', { halted_reason: null });
  const h = getHelpers(db.knex);
  await db
    .knex('rollout_nodes')
    .where({ rollout_id: r.id })
    .whereIn('state', ['failed', 'reverted'])
    .update({ state: 'pending', error: null, updated_at: h.now() });
  return getRollout(db, r.id);
}

/** Operator: every node that installed this rollout's release goes back to its previous one, one at a time. */
export function rollbackRollout(db: Database, id?: number): Promise<Rollout> {
  return transition(db, id, ['active', 'halted'], 'rolling_back');
}

/** Marks a rolling-back rollout finished once no node still runs its version (called by agents). */
export async function finishRollback(db: Database, id: number): Promise<void> {
  const h = getHelpers(db.knex);
  const open = await db.knex('rollout_nodes').where({ rollout_id: id }).whereIn('state', ['done', 'installing', 'soaking', 'rolling_back', 'staged']).first();
  if (!open) await db.knex('rollouts').where({ id, state: 'rolling_back' }).update({ state: 'rolled_back', updated_at: h.now(), finished_at: h.now() });
}

/** Upserts this node's row of a rollout (update first: a failed INSERT would poison a PostgreSQL transaction). */
export async function setNodeState(
  db: Database,
  rolloutId: number,
  serverId: string,
  state: RolloutNodeState,
  fields: { fromVersion?: string | null; toVersion: string; error?: string | null },
): Promise<void> {
  const h = getHelpers(db.knex);
  const values: Record<string, unknown> = { state, updated_at: h.now(), to_version: fields.toVersion };
  if (fields.fromVersion !== undefined) values.from_version = fields.fromVersion;
  if (fields.error !== undefined) values.error = fields.error === null ? null : fields.error.slice(0, 2000);
  for (let attempt = 0; attempt < 3; attempt++) {
    const n = await db.knex('rollout_nodes').where({ rollout_id: rolloutId, server_id: serverId }).update(values);
    if (n > 0) return;
    try {
      await db.knex('rollout_nodes').insert({ rollout_id: rolloutId, server_id: serverId, from_version: null, error: null, ...values });
      return;
    } catch (err) {
      if (!(isOmflowError(err) && err.code === 'COMMON_ERR_DB_UNIQUE')) throw err;
    }
  }
}

// ---------------------------------------------------------------- lock

/**
 * Named lease in cluster_locks with a fencing token that grows on every acquisition. The
 * holder renews it while it works; a dead holder's lease lapses by the database clock.
 */
export async function acquireLock(db: Database, name: string, holder: string, ttlMs: number): Promise<number | null> {
  const h = getHelpers(db.knex);
  if (!(await db.knex('cluster_locks').where({ name }).first())) {
    try {
      await db.knex('cluster_locks').insert({ name, holder: null, token: 0, acquired_at: null, expires_at: new Date(0) });
    } catch (err) {
      if (!(isOmflowError(err) && err.code === 'COMMON_ERR_DB_UNIQUE')) throw err;
    }
  }
  const n = await db
    .knex('cluster_locks')
    .where({ name })
    .andWhere((q) => q.whereNull('holder').orWhere('expires_at', '<', h.now()).orWhere('holder', holder))
    .update({ holder, token: db.knex.raw('token + 1'), acquired_at: h.now(), expires_at: h.nowPlusMs(ttlMs) });
  if (n !== 1) return null;
  const row = await db.knex('cluster_locks').where({ name, holder }).first();
  return row ? Number(row.token) : null;
}

/** Extends the lease; false when the lock was lost (another holder has a newer token). */
export async function renewLock(db: Database, name: string, holder: string, token: number, ttlMs: number): Promise<boolean> {
  const h = getHelpers(db.knex);
  const n = await db
    .knex('cluster_locks')
    .where({ name, holder, token })
    .update({ expires_at: h.nowPlusMs(ttlMs) });
  return n === 1;
}

export async function releaseLock(db: Database, name: string, holder: string, token: number): Promise<void> {
  await db
    .knex('cluster_locks')
    .where({ name, holder, token })
    .update({ holder: null, expires_at: new Date(0) });
}

/** Takes one of `parallelism` rollout slots; returns its name and fencing token. */
export async function acquireRolloutSlot(db: Database, holder: string, parallelism: number, ttlMs: number): Promise<{ name: string; token: number } | null> {
  for (let i = 0; i < Math.max(1, parallelism); i++) {
    const name = `rollout-slot-${i}`;
    const token = await acquireLock(db, name, holder, ttlMs);
    if (token !== null) return { name, token };
  }
  return null;
}
