import type { Knex } from 'knex';
import { type DialectHelpers, getHelpers } from '../../../common/db/helpers/index.js';
import { enqueueStep, type StepType } from '../../../common/protocol/steps.js';
import type { FlowDefinition } from './definition.js';

export const TICKET_STATE = {
  open: 'open',
  running: 'running',
  completed: 'completed',
  rejected: 'rejected',
  failed: 'failed',
  cancelled: 'cancelled',
} as const;
export const FINAL_STATES: readonly string[] = ['completed', 'rejected', 'failed', 'cancelled'];

export interface MoveContext {
  trx: Knex.Transaction;
  ticketId: number;
  createdBy: number | null;
  def: FlowDefinition;
  data: Record<string, unknown>;
  actorId: number | null;
  nodeId: string;
  /** W3C traceparent of the request or step that moves the ticket: a step it queues carries it on. */
  traceParent?: string | null;
}

export interface HistoryEntry {
  ticketId: number;
  step: string | null;
  action: string;
  actorId: number | null;
  nodeId: string;
  input?: unknown;
  output?: unknown;
}

export async function addHistory(trx: Knex.Transaction, h: HistoryEntry): Promise<void> {
  await addHistoryRows(trx, [h]);
}

/** Several history rows in one round trip; their ids follow the order given (see insertRowsInOrder). */
export async function addHistoryRows(trx: Knex.Transaction, entries: readonly HistoryEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const helpers = getHelpers(trx);
  await helpers.insertRowsInOrder(
    trx,
    'ticket_history',
    entries.map((h) => historyRow(helpers, h)),
  );
}

/** The `ticket_history` row of an entry. */
export function historyRow(helpers: DialectHelpers, h: Omit<HistoryEntry, 'ticketId'> & { ticketId?: number }): Record<string, unknown> {
  return {
    ticket_id: h.ticketId,
    step: h.step,
    action: h.action,
    actor_user_id: h.actorId,
    node_id: h.nodeId,
    input: h.input === undefined ? null : JSON.stringify(h.input),
    output: h.output === undefined ? null : JSON.stringify(h.output),
    created_at: helpers.now(),
  };
}

/** What entering a step does to the ticket row, decided before anything is written. */
export interface Placement {
  state: string;
  stepKey: string;
  /** Ticket columns to write: state, current_step, assignees, closed_at. */
  columns: Record<string, unknown>;
  /** An automatic step to enqueue (after the ticket row exists), with the trace it continues. */
  enqueue?: { stepType: StepType; delayMs: number; traceParent?: string | null };
}

/**
 * Decides the ticket's state on `stepKey`; writes nothing, so `trx` may also be the database itself
 * (a creation reads before it writes). A named assignee is looked up by the write that uses the
 * columns, or read here where the vendor cannot.
 */
export async function placeOn(ctx: Pick<MoveContext, 'def' | 'data' | 'createdBy' | 'traceParent'> & { trx: Knex }, stepKey: string): Promise<Placement> {
  const { trx, def } = ctx;
  const h = getHelpers(trx);
  const step = def.steps[stepKey];
  if (!step) throw new Error(`flow has no step ${stepKey}`);
  const columns: Record<string, unknown> = { current_step: stepKey, assignee_user_id: null, assignee_group_id: null };
  if (step.type === 'form') {
    const a = step.assignee ?? {};
    // The write looks the assignee up where the vendor allows (a round trip fewer); unknown: unassigned.
    // A query builder is thenable: it is stored, never awaited (that would run it here).
    const readId = async (table: string, column: string, value: string) => (await trx(table).where(column, value).first('id'))?.id ?? null;
    if (a.user) columns.assignee_user_id = h.idLookedUpInWrite(trx, 'users', 'username', a.user) ?? (await readId('users', 'username', a.user));
    else if (a.group) columns.assignee_group_id = h.idLookedUpInWrite(trx, 'user_groups', 'name', a.group) ?? (await readId('user_groups', 'name', a.group));
    else if (a.creator) columns.assignee_user_id = ctx.createdBy;
    columns.state = TICKET_STATE.open;
    return { state: TICKET_STATE.open, stepKey, columns };
  }
  if (step.type === 'end') {
    const state = step.state ?? TICKET_STATE.completed;
    columns.state = state;
    columns.closed_at = h.now();
    return { state, stepKey, columns };
  }
  let delayMs = 0;
  if (step.type === 'timer') {
    if (step.durationMs !== undefined) delayMs = step.durationMs;
    else if (step.untilField) {
      const at = Date.parse(String(ctx.data[step.untilField] ?? ''));
      delayMs = Number.isFinite(at) ? Math.max(0, at - Date.now()) : 0;
    }
  }
  columns.state = TICKET_STATE.running;
  return { state: TICKET_STATE.running, stepKey, columns, enqueue: { stepType: step.type as StepType, delayMs, traceParent: ctx.traceParent } };
}

/** Writes the step row a placement asks for; returns its id. */
export async function enqueuePlaced(trx: Knex.Transaction, ticketId: number, p: Placement): Promise<number | undefined> {
  return p.enqueue
    ? enqueueStep(trx, { ticketId, stepKey: p.stepKey, stepType: p.enqueue.stepType, delayMs: p.enqueue.delayMs, traceParent: p.enqueue.traceParent })
    : undefined;
}

/** The history row of entering a step; a creation's has no ticket id yet (set by insertWithChildren). */
export function enterEntry<C extends Pick<MoveContext, 'actorId' | 'nodeId'> & { ticketId?: number }>(ctx: C, p: Placement, stepId: number | undefined) {
  return {
    ticketId: ctx.ticketId as C['ticketId'],
    step: p.stepKey,
    action: 'enter',
    actorId: ctx.actorId,
    nodeId: ctx.nodeId,
    output: { state: p.state, stepId },
  };
}

/**
 * Moves a ticket onto `stepKey` inside the caller's transaction: a human step waits for its
 * assignee, an end step closes the ticket, an automatic step becomes a row of the step queue
 * (same transaction, so a committed ticket never lacks its step). `history` rows written
 * before the 'enter' row go in the same round trip. Returns the new state.
 */
export async function moveTo(
  ctx: MoveContext,
  stepKey: string,
  history: readonly HistoryEntry[] = [],
): Promise<{ state: string; stepKey: string; stepId?: number }> {
  const { trx } = ctx;
  const h = getHelpers(trx);
  const p = await placeOn(ctx, stepKey);
  const stepId = await enqueuePlaced(trx, ctx.ticketId, p);
  await trx('tickets')
    .where({ id: ctx.ticketId })
    .update({ ...p.columns, data: JSON.stringify(ctx.data), updated_at: h.now(), row_version: trx.raw('row_version + 1') });
  await addHistoryRows(trx, [...history, enterEntry(ctx, p, stepId)]);
  return { state: p.state, stepKey, stepId };
}
