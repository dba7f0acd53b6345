import type { Knex } from 'knex';
import { type DialectHelpers, getHelpers } from '../db/helpers/index.js';
import { deleteBatch } from '../db/purge.js';

/**
 * The step-queue protocol, shared by the booster (dispatcher) and the app server (runner,
 * and its own dispatcher when no booster is configured).
 *
 *   ready ──lease(server, epoch)──▶ assigned ──complete──▶ done | failed
 *     ▲                                │
 *     └──── lease lapsed / released ───┘── run lost too often, or abort ──▶ quarantined
 *                                                                             │ operator
 *     ◀──────────────────────── run again ────────────────────────────────────┘ (or fail the ticket)
 *
 * Every transition is a single conditional UPDATE, so two actors never both win.
 * A lease is granted only while the granting booster still holds the leader lease at
 * that epoch (checked in the same statement), and a result is committed only while the
 * row still names the same server and epoch: nothing is applied twice.
 *
 * A *lost run* is a run that started on a server (markStepStarted) and ended without a result:
 * its lease lapsed (the server crashed, hung or lost the database) or the server gave it back
 * while stopping. The flow step's policy, copied into the row when it is queued, decides what
 * follows (ADR 0020): `onFailover: 'rerun'` (default) hands it out again until `maxRuns` runs
 * were lost, `'abort'` stops at the first lost run. Either way the step is quarantined: it is
 * never handed out again by itself, and the operator sees it (status, admin page).
 */
export const STEP_STATE = {
  ready: 'ready',
  assigned: 'assigned',
  done: 'done',
  failed: 'failed',
  cancelled: 'cancelled',
  /** A run was lost and the policy says stop (abort, or maxRuns lost runs): waits for an operator. */
  quarantined: 'quarantined',
} as const;
export type StepState = (typeof STEP_STATE)[keyof typeof STEP_STATE];

export const STEP_TYPES = ['condition', 'compute', 'http', 'timer'] as const;
export type StepType = (typeof STEP_TYPES)[number];

/** What a flow step does after a lost run (JobCenter's restart / abort after a failover). */
export const ON_FAILOVER = ['rerun', 'abort'] as const;
export type OnFailover = (typeof ON_FAILOVER)[number];
/** The policy of a step whose flow says nothing (also the column defaults of older rows). */
export const STEP_RUN_DEFAULTS = { onFailover: 'rerun' as OnFailover, maxRuns: 3 };
export const MAX_RUNS_LIMIT = 100;

export type QuarantineReason = 'aborted-after-failover' | 'too-many-lost-runs';

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
  started_at: unknown;
  lost_runs: number;
  max_runs: number;
  on_failover: OnFailover;
  /** W3C traceparent of what queued the step (null: none was known). */
  trace_parent: string | null;
}

/** A step to queue: where, what, when, its policy after a lost run (flow step settings), and the trace that queued it. */
export interface QueuedStep {
  ticketId?: number;
  stepKey: string;
  stepType: StepType;
  delayMs?: number;
  onFailover?: OnFailover;
  maxRuns?: number;
  traceParent?: string | null;
}

/** Writes a step row; call inside the transaction that moved the ticket to the step. */
export async function enqueueStep(trx: Knex | Knex.Transaction, step: QueuedStep & { ticketId: number }): Promise<number> {
  const h = getHelpers(trx);
  return h.insertReturningId(trx, 'steps', readyStepRow(h, step));
}

/** The `steps` row of a step put on the queue (its ticket id left out when the ticket is inserted with it). */
export function readyStepRow(h: DialectHelpers, step: QueuedStep): Record<string, unknown> {
  return {
    ticket_id: step.ticketId,
    step_key: step.stepKey,
    step_type: step.stepType,
    state: STEP_STATE.ready,
    attempt: 0,
    dispatch_count: 0,
    on_failover: step.onFailover ?? STEP_RUN_DEFAULTS.onFailover,
    max_runs: step.maxRuns ?? STEP_RUN_DEFAULTS.maxRuns,
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

/** Longest wait for the read of dispatchable steps; a round that fails is logged and the next one tries again. */
const DISPATCH_READ_TIMEOUT_MS = 10_000;

/** Steps a dispatcher may hand out now: ready and due, or assigned with a lapsed lease. Oldest first. */
export async function findDispatchableSteps(knex: Knex, limit: number): Promise<StepRow[]> {
  const h = getHelpers(knex);
  return (
    knex('steps')
      .select(
        'id',
        'ticket_id',
        'step_key',
        'step_type',
        'state',
        'attempt',
        'dispatch_count',
        'assigned_server',
        'epoch',
        'started_at',
        'lost_runs',
        'max_runs',
        'on_failover',
        'trace_parent',
      )
      .where((q) =>
        q
          .where((r) => r.where('state', STEP_STATE.ready).andWhere('ready_at', '<=', h.now()))
          .orWhere((r) => r.where('state', STEP_STATE.assigned).andWhere('lease_expires_at', '<', h.now())),
      )
      .orderBy('id', 'asc')
      .limit(limit)
      // A dispatcher awaits each round: a read the database never answers would stop dispatch for good.
      .timeout(DISPATCH_READ_TIMEOUT_MS)
  );
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

/** The row while it may be handed out (ready and due, or its lease lapsed), fenced by the leader lease when a booster asks. */
function dispatchable(knex: Knex | Knex.Transaction, req: { stepId: number; epoch: number; leader?: { holder: string } }) {
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
  return q;
}

/**
 * `lost_runs` counting the run this update ends: a lapsed lease of a started run. First in every
 * SET that uses it: MySQL evaluates a single-table UPDATE's assignments left to right, each
 * seeing the ones before (the other vendors read the old row throughout).
 */
function lostRunsCountingLapse(knex: Knex | Knex.Transaction) {
  return knex.raw('?? + CASE WHEN ?? = ? AND ?? IS NOT NULL THEN 1 ELSE 0 END', ['lost_runs', 'state', STEP_STATE.assigned, 'started_at']);
}

/** Lost runs of a dispatchable row, the one its lapsed lease ends included. */
export function lostRunsOf(row: Pick<StepRow, 'state' | 'started_at' | 'lost_runs'>): number {
  return Number(row.lost_runs) + (row.state === STEP_STATE.assigned && row.started_at != null ? 1 : 0);
}

/** What the policy says of a dispatchable row: hand it out, or quarantine it (and why). */
export function afterLostRuns(row: Pick<StepRow, 'state' | 'started_at' | 'lost_runs' | 'max_runs' | 'on_failover'>): 'run' | QuarantineReason {
  const lost = lostRunsOf(row);
  if (lost > 0 && row.on_failover === 'abort') return 'aborted-after-failover';
  if (lost >= Number(row.max_runs)) return 'too-many-lost-runs';
  return 'run';
}

/**
 * Takes a dispatchable row out of the queue for good (until an operator acts), under the same
 * fencing as leaseStep. True when this call won the row.
 */
export async function quarantineStep(
  knex: Knex | Knex.Transaction,
  req: { stepId: number; epoch: number; leader?: { holder: string }; reason: QuarantineReason },
): Promise<boolean> {
  const h = getHelpers(knex);
  const n = await dispatchable(knex, req).update({
    lost_runs: lostRunsCountingLapse(knex),
    state: STEP_STATE.quarantined,
    quarantine_reason: req.reason,
    lease_expires_at: null,
    updated_at: h.now(),
  });
  return Number(n) === 1;
}

/**
 * One dispatchable row, as a dispatcher takes it: leased (`leased`), quarantined by its policy
 * (`quarantined`, with why), or taken by someone else meanwhile (`lost-race`).
 */
export async function takeStep(
  knex: Knex | Knex.Transaction,
  row: StepRow,
  req: LeaseRequest,
): Promise<{ kind: 'leased' } | { kind: 'quarantined'; reason: QuarantineReason } | { kind: 'lost-race' }> {
  const policy = afterLostRuns(row);
  if (policy === 'run') return (await leaseStep(knex, req)) ? { kind: 'leased' } : { kind: 'lost-race' };
  return (await quarantineStep(knex, { ...req, reason: policy })) ? { kind: 'quarantined', reason: policy } : { kind: 'lost-race' };
}

/** Grants one step to a server. True when this call won the row. */
export async function leaseStep(knex: Knex | Knex.Transaction, req: LeaseRequest): Promise<boolean> {
  const h = getHelpers(knex);
  const n = await dispatchable(knex, req).update({
    lost_runs: lostRunsCountingLapse(knex),
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

/**
 * Graceful stop: gives back every lease this server holds, so they are handed out at once. A run
 * that had started is a lost run (its policy applies at the next dispatch).
 */
export async function releaseAllSteps(knex: Knex, serverId: string): Promise<number> {
  const h = getHelpers(knex);
  const n = await knex('steps')
    .where({ assigned_server: serverId, state: STEP_STATE.assigned })
    .update({
      lost_runs: knex.raw('?? + CASE WHEN ?? IS NOT NULL THEN 1 ELSE 0 END', ['lost_runs', 'started_at']), // first: see lostRunsCountingLapse
      state: STEP_STATE.ready,
      assigned_server: null,
      lease_expires_at: null,
      started_at: null,
      ready_at: h.now(),
      updated_at: h.now(),
    });
  return Number(n);
}

export interface QuarantinedStep {
  id: number;
  ticketId: number;
  ticketNo: string | null;
  stepKey: string;
  stepType: string;
  reason: QuarantineReason;
  lostRuns: number;
  maxRuns: number;
  /** The server whose run was lost last. */
  lastServer: string | null;
  lastError: string | null;
  since: string | null;
}

/** Quarantined steps, oldest first (of one ticket, or one step), and how many there are in all. */
export async function quarantinedSteps(
  knex: Knex,
  opts: { limit?: number; ticketId?: number; stepId?: number } = {},
): Promise<{ total: number; steps: QuarantinedStep[] }> {
  const h = getHelpers(knex);
  const base = () => {
    const q = knex('steps as s').where('s.state', STEP_STATE.quarantined);
    if (opts.ticketId !== undefined) q.andWhere('s.ticket_id', opts.ticketId);
    if (opts.stepId !== undefined) q.andWhere('s.id', opts.stepId);
    return q;
  };
  const [count, rows] = await Promise.all([
    base().count({ n: '*' }).first(),
    base()
      .leftJoin('tickets as t', 't.id', 's.ticket_id')
      .select(
        's.id',
        's.ticket_id',
        't.ticket_no',
        's.step_key',
        's.step_type',
        's.quarantine_reason',
        's.lost_runs',
        's.max_runs',
        's.assigned_server',
        's.last_error',
        's.updated_at',
      )
      .orderBy('s.id')
      .limit(opts.limit ?? 50),
  ]);
  return {
    total: Number(count?.n ?? 0),
    steps: rows.map((r) => ({
      id: Number(r.id),
      ticketId: Number(r.ticket_id),
      ticketNo: r.ticket_no ?? null,
      stepKey: r.step_key,
      stepType: r.step_type,
      reason: r.quarantine_reason,
      lostRuns: Number(r.lost_runs),
      maxRuns: Number(r.max_runs),
      lastServer: r.assigned_server ?? null,
      lastError: r.last_error ?? null,
      since: h.toDate(r.updated_at)?.toISOString() ?? null,
    })),
  };
}

/** Operator: run a quarantined step again, with a fresh count of lost runs. True when it was quarantined. */
export async function requeueQuarantinedStep(knex: Knex | Knex.Transaction, stepId: number): Promise<boolean> {
  const h = getHelpers(knex);
  const n = await knex('steps').where({ id: stepId, state: STEP_STATE.quarantined }).update({
    state: STEP_STATE.ready,
    lost_runs: 0,
    quarantine_reason: null,
    assigned_server: null,
    started_at: null,
    ready_at: h.now(),
    updated_at: h.now(),
  });
  return Number(n) === 1;
}

/**
 * Operator: give a quarantined step up (inside the transaction that fails its ticket). True when
 * it was quarantined; it is then `failed` with the reason as its error.
 */
export async function abandonQuarantinedStep(trx: Knex.Transaction, stepId: number, by: string): Promise<boolean> {
  const h = getHelpers(trx);
  const n = await trx('steps')
    .where({ id: stepId, state: STEP_STATE.quarantined })
    .update({ state: STEP_STATE.failed, last_error: `given up by ${by}`.slice(0, 2000), finished_at: h.now(), updated_at: h.now() });
  return Number(n) === 1;
}

/** Retention: one batch of finished rows (done, failed, cancelled) last changed more than `olderThanMs` ago. */
export function purgeFinishedSteps(knex: Knex, olderThanMs: number, limit: number): Promise<number> {
  const h = getHelpers(knex);
  return deleteBatch(
    knex,
    'steps',
    (q) => q.whereIn('state', [STEP_STATE.done, STEP_STATE.failed, STEP_STATE.cancelled]).andWhere('updated_at', '<', h.nowPlusMs(-olderThanMs)),
    limit,
  );
}
