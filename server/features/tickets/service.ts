import type { Knex } from 'knex';
import type { Database } from '../../../common/db/create-database.js';
import { getHelpers } from '../../../common/db/helpers/index.js';
import { readyStepRow } from '../../../common/protocol/steps.js';
import { ServerErrors } from '../../errors.js';
import type { AuthUser } from '../../types.js';
import type { FlowDefinition, FormStep } from '../flows/definition.js';
import { enqueuePlaced, FINAL_STATES, placeOn, TICKET_STATE } from '../flows/engine.js';
import type { FlowsStore } from '../flows/store.js';
import { checkValues, type FieldDef } from '../forms/fields.js';
import type { FormsStore } from '../forms/store.js';
import type { UsersStore } from '../users/store.js';
import { nextTicketNumber, ticketNumberInInsert } from './numbering.js';
import { enterEntry, type HistoryEntry, type NewTicket, type TicketFilter, type TicketRow, type TicketsStore } from './store.js';

export const ACTIONS = ['approve', 'submit', 'reject', 'send_back', 'comment', 'cancel'] as const;
export type TicketAction = (typeof ACTIONS)[number];

export interface TicketSummary {
  id: number;
  number: string;
  state: string;
  currentStep: string | null;
}

/**
 * A ticket left at an automatic step has a step on the queue: only then is the dispatcher worth
 * telling after the commit (a steps-ready hint costs every booster a query of the step queue; a
 * human step or a closed ticket gives it nothing to find).
 */
export const atAutomaticStep = (s: TicketSummary): boolean => s.state === TICKET_STATE.running;

const summary = (t: Pick<TicketRow, 'id' | 'number'>, state: string, currentStep: string | null): TicketSummary => ({
  id: t.id,
  number: t.number,
  state,
  currentStep,
});

export function createTicketsService(deps: { store: TicketsStore; forms: FormsStore; flows: FlowsStore; users: UsersStore; nodeId: string }) {
  const { store, forms, flows, users, nodeId } = deps;

  async function fieldErrors(fields: FieldDef[], input: unknown, trx: Knex) {
    const r = checkValues(fields, input && typeof input === 'object' ? (input as Record<string, unknown>) : {});
    for (const u of r.users) if (!(await trx('users').where({ username: u.username }).first('id'))) r.errors[u.key] = 'user';
    if (Object.keys(r.errors).length) throw ServerErrors.SERVER_ERR_VALIDATION(undefined, { fields: r.errors });
    return r.values;
  }

  async function canAct(user: AuthUser, t: TicketRow): Promise<boolean> {
    if (user.role === 'admin') return true;
    if (t.assigneeUserId === user.id) return true;
    if (t.assigneeGroupId !== null && (await users.groupIdsOf(user.id)).includes(t.assigneeGroupId)) return true;
    return false;
  }

  async function canSee(user: AuthUser, t: TicketRow): Promise<boolean> {
    return user.role === 'admin' || t.createdBy === user.id || (await canAct(user, t));
  }

  /** What a creation reads and decides before it writes anything. */
  async function prepare(db: Knex, formKey: string, input: { data?: unknown; title?: unknown }, user: AuthUser | null, traceParent: string | null) {
    const form = await forms.withFlow(formKey, db);
    if (!form?.published || !form.flow) throw ServerErrors.SERVER_ERR_NOT_FOUND(`No published form ${formKey}`);
    const values = await fieldErrors(form.fields, input.data, db);
    const flow = form.flow;
    const version = await flows.versionOf(flow.id, flow.latestVersion, db);
    if (!version) throw ServerErrors.SERVER_ERR_CONFLICT(`Form ${formKey} has no deployed flow`);
    const title =
      typeof input.title === 'string' && input.title.trim() ? input.title.trim() : typeof values.title === 'string' && values.title ? values.title : form.title;
    // The row is written once, already placed on the flow's first step: no UPDATE after the
    // INSERT, and both history rows in the same round trip (round trips are what a creation costs).
    const placed = await placeOn({ trx: db, def: version.definition, data: values, createdBy: user?.id ?? null, traceParent }, version.definition.start);
    const ticket = (number: NewTicket['number']): NewTicket => ({
      number,
      formId: form.id,
      flowVersionId: version.id,
      title,
      data: values,
      createdBy: user?.id ?? null,
      slaHours: flow.slaHours,
    });
    /** Both history rows of the creation; the ticket's id is set by whoever inserts them. */
    const history = (stepId: number | undefined): Omit<HistoryEntry, 'ticketId'>[] => {
      const actor = { actorId: user?.id ?? null, nodeId };
      return [{ ...actor, step: null, action: 'create', input: values, output: { flowVersion: version.version } }, enterEntry(actor, placed, stepId)];
    };
    return { prefix: flow.ticketPrefix, placed, ticket, history };
  }
  type Creation = Awaited<ReturnType<typeof prepare>>;

  /**
   * Moves a ticket onto `stepKey` inside the caller's transaction: a human step waits for its
   * assignee, an end step closes the ticket, an automatic step becomes a row of the step queue
   * (same transaction, so a committed ticket never lacks its step).
   */
  async function moveTo(
    trx: Knex.Transaction,
    m: { ticketId: number; createdBy: number | null; def: FlowDefinition; data: Record<string, unknown>; actorId: number | null; traceParent: string | null },
    stepKey: string,
  ): Promise<{ state: string; stepKey: string }> {
    const p = await placeOn({ trx, def: m.def, data: m.data, createdBy: m.createdBy, traceParent: m.traceParent }, stepKey);
    const stepId = await enqueuePlaced(trx, m.ticketId, p);
    await store.move(trx, m.ticketId, { columns: p.columns, data: m.data });
    await store.addHistory(trx, [enterEntry({ ticketId: m.ticketId, actorId: m.actorId, nodeId }, p, stepId)]);
    return { state: p.state, stepKey };
  }

  async function write(trx: Knex.Transaction, c: Creation): Promise<TicketSummary> {
    const one = await writeInOneStatement(trx, c);
    if (one) return one;
    // A sequence value: taken without waiting on other creations (see numbering.ts), inside the INSERT where the vendor allows.
    const number = ticketNumberInInsert(trx, c.prefix) ?? (await nextTicketNumber(trx, c.prefix));
    const { id, number: taken } = await store.insert(trx, c.ticket(number), c.placed.columns);
    const stepId = await enqueuePlaced(trx, id, c.placed);
    await store.addHistory(
      trx,
      c.history(stepId).map((e) => ({ ...e, ticketId: id })),
    );
    return summary({ id, number: taken }, c.placed.state, c.placed.stepKey);
  }

  /**
   * Ticket, number, first step and history in one statement, or null (nothing written) where the
   * vendor cannot. The 'enter' row names the step row's id, which only the statement knows.
   */
  async function writeInOneStatement(db: Knex, c: Creation): Promise<TicketSummary | null> {
    const number = ticketNumberInInsert(db, c.prefix);
    if (!number) return null;
    const h = getHelpers(db);
    const [create, enter] = c.history(undefined).map((e) => store.historyRow(e));
    const step = c.placed.enqueue && readyStepRow(h, { stepKey: c.placed.stepKey, ...c.placed.enqueue });
    if (step) enter.output = h.jsonTextWithInsertedId({ state: c.placed.state }, 'stepId', 'new_step');
    const created = await store.insertWithChildren(db, c.ticket(number), c.placed.columns, { step, history: [create, enter] });
    return created && summary(created, c.placed.state, c.placed.stepKey);
  }

  return {
    canAct,
    canSee,

    /**
     * Validates the submission (field-level errors), then creates the ticket in `trx` and moves it to the flow's first step.
     * `traceParent`: the request's W3C trace context, carried on by the step it queues.
     */
    async create(
      trx: Knex.Transaction,
      formKey: string,
      input: { data?: unknown; title?: unknown },
      user: AuthUser | null,
      traceParent: string | null = null,
    ): Promise<TicketSummary> {
      return write(trx, await prepare(trx, formKey, input, user, traceParent));
    },

    /**
     * The same creation, atomic by itself (no caller transaction, no Idempotency-Key): ONE statement
     * where the vendor allows (ticket, number, first step, both history rows; no BEGIN/COMMIT). Its reads run before it, outside any transaction: inside one
     * they would lock nothing either, so a form unpublished meanwhile races the same way. Otherwise
     * the writes run in a transaction of their own.
     */
    async createAlone(
      database: Database,
      formKey: string,
      input: { data?: unknown; title?: unknown },
      user: AuthUser | null,
      traceParent: string | null = null,
    ): Promise<TicketSummary> {
      const c = await prepare(database.knex, formKey, input, user, traceParent);
      return (await writeInOneStatement(database.knex, c)) ?? database.transaction((trx) => write(trx, c));
    },

    /** A human action on the ticket's current form step (or comment / cancel). */
    async act(
      trx: Knex.Transaction,
      ticketId: number,
      user: AuthUser,
      input: { action?: unknown; data?: unknown; comment?: unknown },
      traceParent: string | null = null,
    ): Promise<TicketSummary> {
      const action = input.action as TicketAction;
      if (!(ACTIONS as readonly string[]).includes(String(action))) throw ServerErrors.SERVER_ERR_VALIDATION(undefined, { fields: { action: 'option' } });
      const t = await store.byId(ticketId, trx, true);
      if (!t || !(await canSee(user, t))) throw ServerErrors.SERVER_ERR_NOT_FOUND('No such ticket');
      const comment = typeof input.comment === 'string' ? input.comment.trim().slice(0, 10_000) : '';
      if (comment) await store.addComment(trx, t.id, user.id, comment);
      if (action === 'comment') {
        if (!comment) throw ServerErrors.SERVER_ERR_VALIDATION(undefined, { fields: { comment: 'required' } });
        await store.addHistory(trx, [{ ticketId: t.id, step: t.currentStep, action: 'comment', actorId: user.id, nodeId, input: { comment } }]);
        return summary(t, t.state, t.currentStep);
      }
      if (FINAL_STATES.includes(t.state)) throw ServerErrors.SERVER_ERR_CONFLICT(`Ticket ${t.number} is ${t.state}`);
      const version = t.flowVersionId ? await flows.version(t.flowVersionId, trx) : null;
      if (!version) throw ServerErrors.SERVER_ERR_CONFLICT('The ticket has no flow');
      if (action === 'cancel') {
        if (user.role !== 'admin' && t.createdBy !== user.id) throw ServerErrors.SERVER_ERR_FORBIDDEN();
        await trx('steps').where({ ticket_id: t.id }).whereIn('state', ['ready', 'assigned']).update({ state: 'cancelled', lease_expires_at: null });
        await store.close(trx, t.id, TICKET_STATE.cancelled);
        await store.addHistory(trx, [
          { ticketId: t.id, step: t.currentStep, action: 'cancel', actorId: user.id, nodeId, input: comment ? { comment } : undefined },
        ]);
        return summary(t, TICKET_STATE.cancelled, t.currentStep);
      }
      if (t.state !== TICKET_STATE.open || !t.currentStep) throw ServerErrors.SERVER_ERR_CONFLICT(`Ticket ${t.number} is not waiting for input`);
      if (!(await canAct(user, t))) throw ServerErrors.SERVER_ERR_FORBIDDEN('The ticket is assigned to someone else');
      const step = version.definition.steps[t.currentStep] as FormStep;
      let next: string | undefined;
      let values: Record<string, unknown> = {};
      if (action === 'approve' || action === 'submit') {
        values = await fieldErrors(step.fields ?? [], input.data, trx);
        next = step.next;
      } else if (action === 'reject') next = step.onReject;
      else if (action === 'send_back') {
        if (!step.onSendBack) throw ServerErrors.SERVER_ERR_CONFLICT('This step cannot be sent back');
        next = step.onSendBack;
      }
      await store.addHistory(trx, [
        { ticketId: t.id, step: t.currentStep, action, actorId: user.id, nodeId, input: { ...values, ...(comment ? { comment } : {}) } },
      ]);
      if (!next) {
        // Reject without onReject: close as rejected.
        await store.close(trx, t.id, TICKET_STATE.rejected);
        return summary(t, TICKET_STATE.rejected, t.currentStep);
      }
      const moved = await moveTo(
        trx,
        { ticketId: t.id, createdBy: t.createdBy, def: version.definition, data: { ...t.data, ...values }, actorId: user.id, traceParent },
        next,
      );
      return summary(t, moved.state, moved.stepKey);
    },

    async detail(id: number, user: AuthUser) {
      const t = await store.byId(id);
      if (!t || !(await canSee(user, t))) throw ServerErrors.SERVER_ERR_NOT_FOUND('No such ticket');
      const [history, comments, form, version, heldStep] = await Promise.all([
        store.history(id),
        store.comments(id),
        forms.byId(t.formId),
        t.flowVersionId ? flows.version(t.flowVersionId) : Promise.resolve(null),
        // Marked: an automatic step whose runs were lost waits for an administrator.
        t.state === TICKET_STATE.running ? store.heldStep(id) : Promise.resolve(null),
      ]);
      const step = version && t.currentStep ? version.definition.steps[t.currentStep] : undefined;
      return {
        ...t,
        formKey: form?.formKey ?? null,
        flowVersion: version?.version ?? null,
        step: step
          ? {
              key: t.currentStep,
              type: step.type,
              title: step.type === 'form' ? (step.title ?? t.currentStep) : t.currentStep,
              fields: step.type === 'form' ? (step.fields ?? []) : [],
              canSendBack: step.type === 'form' && !!step.onSendBack,
            }
          : null,
        canAct: t.state === TICKET_STATE.open && (await canAct(user, t)),
        heldStep: heldStep && { stepId: heldStep.id, stepKey: heldStep.stepKey, reason: heldStep.reason, lostRuns: heldStep.lostRuns, since: heldStep.since },
        history,
        comments,
      };
    },

    async list(user: AuthUser, f: Omit<TicketFilter, 'assignedTo'> & { mine?: boolean }) {
      const filter: TicketFilter = { ...f };
      if (user.role !== 'admin' || f.mine) filter.createdBy = user.id;
      return store.list(filter);
    },

    async tasks(user: AuthUser, page = 1, pageSize = 50) {
      return store.list({
        assignedTo: { userId: user.id, groupIds: await users.groupIdsOf(user.id), includeUnassigned: user.role === 'admin' },
        page,
        pageSize,
      });
    },
  };
}

export type TicketsService = ReturnType<typeof createTicketsService>;
