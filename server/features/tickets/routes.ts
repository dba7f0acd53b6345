import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Database } from '../../../common/db/create-database.js';
import { traceParentOf } from '../../../common/protocol/trace-context.js';
import { idempotentWrite } from '../../http/idempotency.js';
import type { FormsStore } from '../forms/store.js';
import { requireUser, verifyCsrf } from '../users/guards.js';
import { atAutomaticStep, type TicketSummary, type TicketsService } from './service.js';

export function paging(request: FastifyRequest): { page: number; pageSize: number } {
  const q = request.query as Record<string, string | undefined>;
  const page = Math.max(1, Math.floor(Number(q.page) || 1));
  const pageSize = Math.min(100, Math.max(1, Math.floor(Number(q.pageSize) || 20)));
  return { page, pageSize };
}

/** Ticket API: raise from a form, read with history, list/search, act, comment, my tasks. */
export async function ticketsRoutes(
  app: FastifyInstance,
  opts: { db: Database; tickets: TicketsService; forms: FormsStore; onCommitted: () => void },
): Promise<void> {
  const { db, tickets, forms, onCommitted } = opts;

  app.post('/api/forms/:formKey/tickets', { preHandler: [requireUser, verifyCsrf] }, async (request, reply) => {
    const { formKey } = request.params as { formKey: string };
    const body = (request.body ?? {}) as { data?: unknown; title?: unknown };
    let stepQueued = false;
    const answer = (created: TicketSummary) => {
      stepQueued = atAutomaticStep(created);
      return { status: 201, body: created };
    };
    const r = await idempotentWrite(
      db,
      request,
      reply,
      async (trx) => answer(await tickets.create(trx, formKey, body, request.user, traceParentOf(request.headers.traceparent))),
      async (alone) => answer(await tickets.createAlone(alone, formKey, body, request.user, traceParentOf(request.headers.traceparent))),
    );
    if (stepQueued) onCommitted();
    return r;
  });

  app.get('/api/tickets', { preHandler: [requireUser] }, async (request) => {
    const q = request.query as Record<string, string | undefined>;
    const { page, pageSize } = paging(request);
    const form = q.formKey ? await forms.byKey(q.formKey) : null;
    const r = await tickets.list(request.user!, {
      state: q.state || undefined,
      q: q.q || undefined,
      formId: form?.id ?? (q.formKey ? -1 : undefined),
      mine: q.mine === 'true',
      page,
      pageSize,
    });
    return { ...r, page, pageSize };
  });

  app.get('/api/tickets/:id', { preHandler: [requireUser] }, async (request) => tickets.detail(Number((request.params as { id: string }).id), request.user!));

  app.post('/api/tickets/:id/actions', { preHandler: [requireUser, verifyCsrf] }, async (request, reply) => {
    const id = Number((request.params as { id: string }).id);
    let stepQueued = false;
    const r = await idempotentWrite(db, request, reply, async (trx) => {
      const acted = await tickets.act(trx, id, request.user!, (request.body ?? {}) as Record<string, unknown>, traceParentOf(request.headers.traceparent));
      stepQueued = atAutomaticStep(acted);
      return { status: 200, body: acted };
    });
    if (stepQueued) onCommitted();
    return r;
  });

  app.post('/api/tickets/:id/comments', { preHandler: [requireUser, verifyCsrf] }, async (request, reply) => {
    const id = Number((request.params as { id: string }).id);
    const comment = (request.body as { body?: unknown } | undefined)?.body;
    return idempotentWrite(db, request, reply, async (trx) => ({
      status: 201,
      body: await tickets.act(trx, id, request.user!, { action: 'comment', comment }),
    }));
  });

  app.get('/api/tasks', { preHandler: [requireUser] }, async (request) => {
    const { page, pageSize } = paging(request);
    return { ...(await tickets.tasks(request.user!, page, pageSize)), page, pageSize };
  });
}
