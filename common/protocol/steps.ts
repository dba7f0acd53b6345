import type { Knex } from 'knex';
import { type DialectHelpers, getHelpers } from '../db/helpers/index.js';

/**
 * The step-queue protocol, shared by the booster (dispatcher) and the app server (runner,
 * and its own dispatcher when no booster is configured).
 *
 *   ready ──lease(server, epoch)──▶ assigned ──complete──▶ done | failed
 *     ▲                                │
 *     └──── lease lapsed / released ───┘
 *
 * Every transition is a single conditional UPDATE, so two actors never both win.
 * A lease is granted only while the granting booster still holds the leader lease at
 * that epoch (checked in the same statement), and a result is committed only while the
 * row still names the same server and epoch: nothing is applied twice.
 */
export const STEP_STATE = {
  ready: 'ready',
  assigned: 'assigned',
  done: 'done',
  failed: 'failed',
  cancelled: 'cancelled',
} as const;
export type StepState = (typeof STEP_STATE)[keyof typeof STEP_STATE];

export const STEP_TYPES = ['condition', 'compute', 'http', 'timer'] as const;
export type StepType = (typeof STEP_TYPES)[number];

export interface StepRow {
  id: number;
  ticket_id: number;
  step_key: string;
  step_type: StepType;
  state: StepState;
  attempt: number;
  dispatch_count: number;
  assigned_server: string | null;
  epoch: number | null;
  /** W3C traceparent of what queued the step (null: none was known). */
  trace_parent: string | null;
}

/** Writes a step row; call inside the transaction that moved the ticket to the step. */
export async function enqueueStep(
  trx: Knex | Knex.Transaction,
  step: { ticketId: number; stepKey: string; stepType: StepType; delayMs?: number; traceParent?: string | null },
): Promise<number> {
  const h = getHelpers(trx);
  return h.insertReturningId(trx, 'steps', readyStepRow(h, step));
}

/** The `steps` row of a step put on the queue (its ticket id left out when the ticket is inserted with it). */
export function readyStepRow(
  h: DialectHelpers,
  step: { ticketId?: number; stepKey: string; stepType: StepType; delayMs?: number; traceParent?: string | null },
): Record<string, unknown> {
  return {
    ticket_id: step.ticketId,
    step_key: step.stepKey,
    step_type: step.stepType,
    state: STEP_STATE.ready,
    attempt: 0,
    dispatch_count: 0,
    ready_at: step.delayMs ? h.nowPlusMs(step.delayMs) : h.now(),
    trace_parent: step.traceParent ?? null,
    created_at: h.now(),
    updated_at: h.now(),
  };
}

/**
 * A pure step (condition, compute) that follows a step inside the same fenced transaction: the
 * holder of the previous step's lease ran it at once, so its row is written already finished, with
 * the same server and epoch. If that transaction's completeStep fails, this row rolls back with it.
 */
export async function recordChainedStep(
  trx: Knex.Transaction,
  step: {
    ticketId: number;
    stepKey: string;
    stepType: StepType;
    serverId: string;
    epoch: number;
    outcome: 'done' | 'failed';
    result?: unknown;
    error?: string;
    traceParent?: string | null;
  },
): Promise<number> {
  const h = getHelpers(trx);
  return h.insertReturningId(trx, 'steps', {
    ticket_id: step.ticketId,
    step_key: step.stepKey,
    step_type: step.stepType,
    state: step.outcome === 'done' ? STEP_STATE.done : STEP_STATE.failed,
    attempt: 1,
    dispatch_count: 0,
    assigned_server: step.serverId,
    epoch: step.epoch,
    ready_at: h.now(),
    assigned_at: h.now(),
    started_at: h.now(),
    finished_at: h.now(),
    result: step.result === undefined ? null : JSON.stringify(step.result),
    last_error: step.error ? step.error.slice(0, 2000) : null,
    trace_parent: step.traceParent ?? null,
    created_at: h.now(),
    updated_at: h.now(),
  });
}

/** Steps a dispatcher may hand out now: ready and due, or assigned with a lapsed lease. Oldest first. */
export async function findDispatchableSteps(knex: Knex, limit: number): Promise<StepRow[]> {
  const h = getHelpers(knex);
  return knex('steps')
    .select('id', 'ticket_id', 'step_key', 'step_type', 'state', 'attempt', 'dispatch_count', 'assigned_server', 'epoch', 'trace_parent')
    .where((q) =>
      q
        .where((r) => r.where('state', STEP_STATE.ready).andWhere('ready_at', '<=', h.now()))
        .orWhere((r) => r.where('state', STEP_STATE.assigned).andWhere('lease_expires_at', '<', h.now())),
    )
    .orderBy('id', 'asc')
    .limit(limit);
}

/** When the next timer step becomes due (null: none waiting). Lets a dispatcher sleep precisely. */
export async function nextReadyAt(knex: Knex): Promise<Date | null> {
  const row = await knex('steps').min({ at: 'ready_at' }).where('state', STEP_STATE.ready).first();
  return getHelpers(knex).toDate(row?.at);
}

export interface LeaseRequest {
  stepId: number;
  serverId: string;
  epoch: number;
  leaseMs: number;
  /** The leader lease the grant depends on; omitted only by a standalone server (epoch 0). */
  leader?: { holder: string };
  /** The leaser runs the step itself (standalone server): marked started in the same statement. */
  started?: boolean;
}

/** Grants one step to a server. True when this call won the row. */
export async function leaseStep(knex: Knex | Knex.Transaction, req: LeaseRequest): Promise<boolean> {
  const h = getHelpers(knex);
  const q = knex('steps')
    .where('id', req.stepId)
    .andWhere((w) =>
      w
        .where((r) => r.where('state', STEP_STATE.ready).andWhere('ready_at', '<=', h.now()))
        .orWhere((r) => r.where('state', STEP_STATE.assigned).andWhere('lease_expires_at', '<', h.now())),
    );
  if (req.leader) {
    const leader = req.leader;
    q.whereExists((sub) =>
      sub.select(knex.raw('1')).from('booster_lease').where({ name: 'leader', holder: leader.holder, epoch: req.epoch }).andWhere('expires_at', '>', h.now()),
    );
  }
  const n = await q.update({
    state: STEP_STATE.assigned,
    assigned_server: req.serverId,
    epoch: req.epoch,
    lease_expires_at: h.nowPlusMs(req.leaseMs),
    assigned_at: h.now(),
    started_at: req.started ? h.now() : null,
    attempt: knex.raw('attempt + 1'),
    dispatch_count: knex.raw('dispatch_count + 1'),
    updated_at: h.now(),
  });
  return Number(n) === 1;
}

type Holder = { stepId: number; serverId: string; epoch: number };

function heldBy(knex: Knex | Knex.Transaction, hold: Holder) {
  return knex('steps').where({ id: hold.stepId, assigned_server: hold.serverId, epoch: hold.epoch, state: STEP_STATE.assigned });
}

/** The server accepted the dispatch and starts running; extends the lease. False: not ours any more. */
export async function markStepStarted(knex: Knex | Knex.Transaction, hold: Holder & { leaseMs: number }): Promise<boolean> {
  const h = getHelpers(knex);
  const n = await heldBy(knex, hold).update({ started_at: h.now(), lease_expires_at: h.nowPlusMs(hold.leaseMs), updated_at: h.now() });
  return Number(n) === 1;
}

/** Keeps a long-running step's lease alive. False: the lease was lost (stop working on it). */
export async function renewStepLease(knex: Knex | Knex.Transaction, hold: Holder & { leaseMs: number }): Promise<boolean> {
  const h = getHelpers(knex);
  const n = await heldBy(knex, hold).update({ lease_expires_at: h.nowPlusMs(hold.leaseMs), updated_at: h.now() });
  return Number(n) === 1;
}

/**
 * Commits a step's outcome only while the assignment and epoch still hold. Call inside the
 * transaction that applies the step's effects to the ticket, and roll back when it is false.
 */
export async function completeStep(trx: Knex.Transaction, hold: Holder & { outcome: 'done' | 'failed'; result?: unknown; error?: string }): Promise<boolean> {
  const h = getHelpers(trx);
  const n = await heldBy(trx, hold).update({
    state: hold.outcome === 'done' ? STEP_STATE.done : STEP_STATE.failed,
    result: hold.result === undefined ? null : JSON.stringify(hold.result),
    last_error: hold.error ? hold.error.slice(0, 2000) : null,
    lease_expires_at: null,
    finished_at: h.now(),
    updated_at: h.now(),
  });
  return Number(n) === 1;
}

/** Puts a step back in the queue (retry later, or given back at shutdown). */
export async function releaseStep(knex: Knex | Knex.Transaction, hold: Holder & { delayMs?: number; error?: string }): Promise<boolean> {
  const h = getHelpers(knex);
  const n = await heldBy(knex, hold).update({
    state: STEP_STATE.ready,
    assigned_server: null,
    lease_expires_at: null,
    started_at: null,
    ready_at: hold.delayMs ? h.nowPlusMs(hold.delayMs) : h.now(),
    last_error: hold.error ? hold.error.slice(0, 2000) : null,
    updated_at: h.now(),
  });
  return Number(n) === 1;
}

/** Graceful stop: gives back every lease this server holds, so they are handed out at once. */
export async function releaseAllSteps(knex: Knex, serverId: string): Promise<number> {
  const h = getHelpers(knex);
  const n = await knex('steps')
    .where({ assigned_server: serverId, state: STEP_STATE.assigned })
    .update({ state: STEP_STATE.ready, assigned_server: null, lease_expires_at: null, started_at: null, ready_at: h.now(), updated_at: h.now() });
  return Number(n);
}
