import type { Knex } from 'knex';
import { getHelpers } from '../../../common/db/helpers/index.js';
import type { DbRecord } from '../../../common/db/row.js';
import type { Placement } from '../flows/engine.js';

/**
 * The tickets rows: every write to `tickets` and `ticket_history` goes through here (creation,
 * a move onto a step, closing, history), whoever decides it (a user's action, the step runner).
 */

export interface TicketRow {
  id: number;
  number: string;
  formId: number;
  flowVersionId: number | null;
  title: string;
  state: string;
  currentStep: string | null;
  assigneeUserId: number | null;
  assigneeGroupId: number | null;
  data: Record<string, unknown>;
  createdBy: number | null;
  rowVersion: number;
  dueAt: Date | null;
  closedAt: Date | null;
  createdAt: Date | null;
  updatedAt: Date | null;
}

export interface TicketFilter {
  state?: string;
  formId?: number;
  q?: string;
  createdBy?: number;
  /** "My tasks": assigned to this user or to one of these groups (or unassigned, for admins). */
  assignedTo?: { userId: number; groupIds: number[]; includeUnassigned?: boolean };
  page: number;
  pageSize: number;
}

export interface NewTicket {
  /** A number taken already, or the expression that takes it (ticketNumberInInsert). */
  number: string | Knex.Raw;
  formId: number;
  flowVersionId: number;
  title: string;
  data: Record<string, unknown>;
  createdBy: number | null;
  slaHours: number | null;
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

/** The history entry of entering a step; a creation's has no ticket id yet (set by insertWithChildren). */
export function enterEntry<C extends { actorId: number | null; nodeId: string; ticketId?: number }>(ctx: C, p: Placement, stepId: number | undefined) {
  return {
    ticketId: ctx.ticketId as C['ticketId'],
    step: p.stepKey,
    action: 'enter',
    actorId: ctx.actorId,
    nodeId: ctx.nodeId,
    output: { state: p.state, stepId },
  };
}

export function createTicketsStore(knex: Knex) {
  const h = getHelpers(knex);
  const ticketRow = (t: NewTicket, placement: Record<string, unknown>): Record<string, unknown> => ({
    ticket_no: t.number,
    form_id: t.formId,
    flow_version_id: t.flowVersionId,
    title: t.title.slice(0, 255),
    data: JSON.stringify(t.data),
    created_by: t.createdBy,
    row_version: 1,
    due_at: t.slaHours ? h.nowPlusMs(t.slaHours * 3600_000) : null,
    created_at: h.now(),
    updated_at: h.now(),
    ...placement,
  });
  const toTicket = (r: DbRecord): TicketRow => ({
    id: Number(r.id),
    number: r.ticket_no,
    formId: Number(r.form_id),
    flowVersionId: r.flow_version_id == null ? null : Number(r.flow_version_id),
    title: r.title,
    state: r.state,
    currentStep: r.current_step ?? null,
    assigneeUserId: r.assignee_user_id == null ? null : Number(r.assignee_user_id),
    assigneeGroupId: r.assignee_group_id == null ? null : Number(r.assignee_group_id),
    data: h.fromJson<Record<string, unknown>>(r.data) ?? {},
    createdBy: r.created_by == null ? null : Number(r.created_by),
    rowVersion: Number(r.row_version),
    dueAt: h.toDate(r.due_at),
    closedAt: h.toDate(r.closed_at),
    createdAt: h.toDate(r.created_at),
    updatedAt: h.toDate(r.updated_at),
  });

  function applyFilter(q: Knex.QueryBuilder, f: TicketFilter): Knex.QueryBuilder {
    if (f.state) q.where('state', f.state);
    if (f.formId) q.where('form_id', f.formId);
    if (f.createdBy) q.where('created_by', f.createdBy);
    if (f.q) {
      const term = f.q;
      q.where((w) => w.where(h.contains('ticket_no', term)).orWhere(h.contains('title', term)));
    }
    if (f.assignedTo) {
      const a = f.assignedTo;
      q.where('state', 'open').andWhere((w) => {
        w.where('assignee_user_id', a.userId);
        if (a.groupIds.length) w.orWhereIn('assignee_group_id', a.groupIds);
        if (a.includeUnassigned) w.orWhere((u) => u.whereNull('assignee_user_id').whereNull('assignee_group_id'));
      });
    }
    return q;
  }

  /** The `ticket_history` row of an entry. */
  const historyRow = (e: Omit<HistoryEntry, 'ticketId'> & { ticketId?: number }): Record<string, unknown> => ({
    ticket_id: e.ticketId,
    step: e.step,
    action: e.action,
    actor_user_id: e.actorId,
    node_id: e.nodeId,
    input: e.input === undefined ? null : JSON.stringify(e.input),
    output: e.output === undefined ? null : JSON.stringify(e.output),
    created_at: h.now(),
  });

  return {
    toTicket,
    historyRow,
    /** History rows in one round trip; their ids follow the order given (see insertRowsInOrder). */
    async addHistory(trx: Knex.Transaction, entries: readonly HistoryEntry[]): Promise<void> {
      if (entries.length === 0) return;
      await h.insertRowsInOrder(trx, 'ticket_history', entries.map(historyRow));
    },
    /**
     * Moves the ticket: `columns` (state, current step, assignees, closed_at: a placement's, or a
     * failure's) and its data, one row_version up. With `ifVersion` only while the row still has
     * that version (nobody acted on it since it was read); true when the row was changed.
     */
    async move(
      trx: Knex.Transaction,
      id: number,
      change: { columns: Record<string, unknown>; data: Record<string, unknown>; ifVersion?: number },
    ): Promise<boolean> {
      const where = change.ifVersion === undefined ? { id } : { id, row_version: change.ifVersion };
      const n = await trx('tickets')
        .where(where)
        .update({ ...change.columns, data: JSON.stringify(change.data), updated_at: h.now(), row_version: trx.raw('row_version + 1') });
      return Number(n) === 1;
    },
    /** Closes the ticket in `state` (cancelled, or rejected without a step to go back to): no assignee any more. */
    async close(trx: Knex.Transaction, id: number, state: string): Promise<void> {
      await trx('tickets')
        .where({ id })
        .update({
          state,
          closed_at: trx.fn.now(),
          row_version: trx.raw('row_version + 1'),
          assignee_user_id: null,
          assignee_group_id: null,
        });
    },
    async insert(
      trx: Knex.Transaction,
      t: NewTicket,
      /** Where the ticket starts (state, current step, assignees): written with the row itself. */
      placement: Record<string, unknown> = { state: 'running', current_step: null },
    ): Promise<{ id: number; number: string }> {
      const row = ticketRow(t, placement);
      if (typeof t.number === 'string') return { id: await h.insertReturningId(trx, 'tickets', row), number: t.number };
      const [r] = (await trx('tickets').insert(row, ['id', 'ticket_no'])) as { id: number | string; ticket_no: string }[];
      return { id: Number(r.id), number: r.ticket_no };
    },
    /**
     * The ticket, its first step's queue row (if any) and its history rows in ONE statement where
     * the vendor can (insertWithChildren): atomic without a transaction. Null where it cannot;
     * nothing is written then. `history` may refer to the step row as `new_step`.
     */
    async insertWithChildren(
      db: Knex,
      t: NewTicket,
      placement: Record<string, unknown>,
      rows: { step?: Record<string, unknown>; history: readonly Record<string, unknown>[] },
    ): Promise<{ id: number; number: string } | null> {
      const r = await h.insertWithChildren(
        db,
        'tickets',
        ticketRow(t, placement),
        ['id', 'ticket_no'],
        [
          { table: 'steps', fk: 'ticket_id', rows: rows.step ? [rows.step] : [], as: 'new_step' },
          { table: 'ticket_history', fk: 'ticket_id', rows: rows.history },
        ],
      );
      return r && { id: Number(r.id), number: r.ticket_no };
    },
    async byId(id: number, db: Knex | Knex.Transaction = knex, lock = false): Promise<TicketRow | null> {
      const q = db('tickets').where({ id }).first();
      if (lock) q.forUpdate();
      const r = await q;
      return r ? toTicket(r) : null;
    },
    async list(f: TicketFilter): Promise<{ items: TicketRow[]; total: number }> {
      const totalRow = await applyFilter(knex('tickets'), f).count({ n: '*' }).first();
      const rows = await applyFilter(knex('tickets'), f)
        .orderBy('id', 'desc')
        .limit(f.pageSize)
        .offset((f.page - 1) * f.pageSize);
      return { items: rows.map(toTicket), total: Number((totalRow as { n?: unknown } | undefined)?.n ?? 0) };
    },
    async history(ticketId: number) {
      return (await knex('ticket_history').where({ ticket_id: ticketId }).orderBy('id')).map((r) => ({
        id: Number(r.id),
        step: r.step ?? null,
        action: r.action,
        actorUserId: r.actor_user_id == null ? null : Number(r.actor_user_id),
        nodeId: r.node_id ?? null,
        input: h.fromJson(r.input),
        output: h.fromJson(r.output),
        createdAt: h.toDate(r.created_at),
      }));
    },
    async comments(ticketId: number) {
      return (await knex('ticket_comments').where({ ticket_id: ticketId }).orderBy('id')).map((r) => ({
        id: Number(r.id),
        userId: r.user_id == null ? null : Number(r.user_id),
        body: r.body,
        createdAt: h.toDate(r.created_at),
      }));
    },
    async addComment(trx: Knex.Transaction, ticketId: number, userId: number | null, body: string): Promise<number> {
      return h.insertReturningId(trx, 'ticket_comments', { ticket_id: ticketId, user_id: userId, body, created_at: h.now() });
    },
  };
}

export type TicketsStore = ReturnType<typeof createTicketsStore>;
