import type { Knex } from 'knex';
import { getHelpers } from '../../../common/db/helpers/index.js';
import { enqueueStep, type QueuedStep, type StepType } from '../../../common/protocol/steps.js';
import type { FlowDefinition } from './definition.js';

/**
 * The flow engine's decisions: which state a ticket is in on a step, and which step row entering
 * it queues. It writes no ticket row: the tickets feature does (tickets/store.ts), with what this
 * decides.
 */
export const TICKET_STATE = {
  open: 'open',
  running: 'running',
  completed: 'completed',
  rejected: 'rejected',
  failed: 'failed',
  cancelled: 'cancelled',
} as const;
export const FINAL_STATES: readonly string[] = ['completed', 'rejected', 'failed', 'cancelled'];

/** What entering a step does to the ticket row, decided before anything is written. */
export interface Placement {
  state: string;
  stepKey: string;
  /** Ticket columns to write: state, current_step, assignees, closed_at. */
  columns: Record<string, unknown>;
  /** An automatic step to enqueue (after the ticket row exists), with its policy after a lost run and the trace it continues. */
  enqueue?: Pick<QueuedStep, 'onFailover' | 'maxRuns' | 'traceParent'> & { stepType: StepType; delayMs: number };
}

/**
 * Decides the ticket's state on `stepKey`; writes nothing, so `trx` may also be the database itself
 * (a creation reads before it writes). A named assignee is looked up by the write that uses the
 * columns, or read here where the vendor cannot.
 */
export async function placeOn(
  /** `traceParent`: the W3C trace of the request or step that moves the ticket; a step it queues carries it on. */
  ctx: { trx: Knex; def: FlowDefinition; data: Record<string, unknown>; createdBy: number | null; traceParent?: string | null },
  stepKey: string,
): Promise<Placement> {
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
  return {
    state: TICKET_STATE.running,
    stepKey,
    columns,
    enqueue: { stepType: step.type as StepType, delayMs, onFailover: step.onFailover, maxRuns: step.maxRuns, traceParent: ctx.traceParent },
  };
}

/** Writes the step row a placement asks for; returns its id. */
export async function enqueuePlaced(trx: Knex.Transaction, ticketId: number, p: Placement): Promise<number | undefined> {
  return p.enqueue ? enqueueStep(trx, { ticketId, stepKey: p.stepKey, ...p.enqueue }) : undefined;
}
