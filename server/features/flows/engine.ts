import type { Knex } from 'knex';
import { getHelpers } from '../../../common/db/helpers/index.js';
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
}

export async function addHistory(
  trx: Knex.Transaction,
  h: { ticketId: number; step: string | null; action: string; actorId: number | null; nodeId: string; input?: unknown; output?: unknown },
): Promise<void> {
  const helpers = getHelpers(trx);
  await trx('ticket_history').insert({
    ticket_id: h.ticketId,
    step: h.step,
    action: h.action,
    actor_user_id: h.actorId,
    node_id: h.nodeId,
    input: h.input === undefined ? null : JSON.stringify(h.input),
    output: h.output === undefined ? null : JSON.stringify(h.output),
    created_at: helpers.now(),
  });
}

/**
 * Moves a ticket onto `stepKey` inside the caller's transaction: a human step waits for its
 * assignee, an end step closes the ticket, an automatic step becomes a row of the step queue
 * (same transaction, so a committed ticket never lacks its step). Returns the new state.
 */
export async function moveTo(ctx: MoveContext, stepKey: string): Promise<{ state: string; stepKey: string; stepId?: number }> {
  const { trx, def } = ctx;
  const h = getHelpers(trx);
  const step = def.steps[stepKey];
  if (!step) throw new Error(`flow has no step ${stepKey}`);
  const row: Record<string, unknown> = {
    current_step: stepKey,
    data: JSON.stringify(ctx.data),
    updated_at: h.now(),
    row_version: trx.raw('row_version + 1'),
    assignee_user_id: null,
    assignee_group_id: null,
  };
  let state: string;
  let stepId: number | undefined;
  if (step.type === 'form') {
    state = TICKET_STATE.open;
    const a = step.assignee ?? {};
    if (a.user) row.assignee_user_id = (await trx('users').where({ username: a.user }).first('id'))?.id ?? null;
    else if (a.group) row.assignee_group_id = (await trx('user_groups').where({ name: a.group }).first('id'))?.id ?? null;
    else if (a.creator) row.assignee_user_id = ctx.createdBy;
  } else if (step.type === 'end') {
    state = step.state ?? TICKET_STATE.completed;
    row.closed_at = h.now();
  } else {
    state = TICKET_STATE.running;
    let delayMs = 0;
    if (step.type === 'timer') {
      if (step.durationMs !== undefined) delayMs = step.durationMs;
      else if (step.untilField) {
        const at = Date.parse(String(ctx.data[step.untilField] ?? ''));
        delayMs = Number.isFinite(at) ? Math.max(0, at - Date.now()) : 0;
      }
    }
    stepId = await enqueueStep(trx, { ticketId: ctx.ticketId, stepKey, stepType: step.type as StepType, delayMs });
  }
  row.state = state;
  await trx('tickets').where({ id: ctx.ticketId }).update(row);
  await addHistory(trx, { ticketId: ctx.ticketId, step: stepKey, action: 'enter', actorId: ctx.actorId, nodeId: ctx.nodeId, output: { state, stepId } });
  return { state, stepKey, stepId };
}
