import type { FastifyInstance } from 'fastify';
import type { Database } from '../../../common/db/create-database.js';
import { ServerErrors } from '../../errors.js';
import { idempotentWrite } from '../../http/idempotency.js';
import { requireAdmin, requireUser, verifyCsrf } from '../users/guards.js';
import type { FlowDirectory, FormsService } from './service.js';
import type { FormRow, FormsStore } from './store.js';

export function formView(f: FormRow, flowKey: string | null) {
  return { id: f.id, formKey: f.formKey, title: f.title, description: f.description, fields: f.fields, flowKey, published: f.published };
}

/** GET/POST /api/forms (POST /api/forms/{formKey}/tickets lives with tickets). */
export async function formsRoutes(app: FastifyInstance, opts: { db: Database; forms: FormsService; store: FormsStore; flows: FlowDirectory }): Promise<void> {
  const { db, forms, store, flows } = opts;
  const flowKeys = async () => new Map((await flows.list()).map((f) => [f.id, f.flowKey]));

  app.get('/api/forms', { preHandler: [requireUser] }, async (request) => {
    const keys = await flowKeys();
    const all = request.user!.role === 'admin' && (request.query as { all?: string }).all === 'true';
    return { items: (await store.list({ publishedOnly: !all })).map((f) => formView(f, f.flowId ? (keys.get(f.flowId) ?? null) : null)) };
  });

  app.get('/api/forms/:formKey', { preHandler: [requireUser] }, async (request) => {
    const f = await store.byKey((request.params as { formKey: string }).formKey);
    if (!f || (!f.published && request.user!.role !== 'admin')) throw ServerErrors.SERVER_ERR_NOT_FOUND('No such form');
    return formView(f, f.flowId ? ((await flows.byId(f.flowId))?.flowKey ?? null) : null);
  });

  app.post('/api/forms', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) =>
    idempotentWrite(db, request, reply, async (trx) => ({ status: 201, body: await forms.save(trx, (request.body ?? {}) as Record<string, unknown>) })),
  );
}
