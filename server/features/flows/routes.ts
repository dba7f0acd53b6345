import type { FastifyInstance } from 'fastify';
import type { Database } from '../../../common/db/create-database.js';
import { ServerErrors } from '../../errors.js';
import { idempotentWrite } from '../../http/idempotency.js';
import { requireAdmin, verifyCsrf } from '../users/guards.js';
import { checkDefinition } from './definition.js';
import type { FlowsService } from './service.js';
import type { FlowsStore } from './store.js';

/** /api/flows: list, read (with the latest definition and the versions), deploy a new version, validate. */
export async function flowsRoutes(app: FastifyInstance, opts: { db: Database; flows: FlowsService; store: FlowsStore }): Promise<void> {
  const { db, flows, store } = opts;

  app.get('/api/flows', { preHandler: [requireAdmin] }, async () => ({ items: await store.list() }));

  app.get('/api/flows/:flowKey', { preHandler: [requireAdmin] }, async (request) => {
    const f = await store.byKey((request.params as { flowKey: string }).flowKey);
    if (!f) throw ServerErrors.SERVER_ERR_NOT_FOUND('No such flow');
    const latest = await store.latestVersion(f.id);
    return { ...f, definition: latest?.definition ?? null, versions: await store.versions(f.id) };
  });

  app.post('/api/flows', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) =>
    idempotentWrite(db, request, reply, async (trx) => ({
      status: 201,
      body: await flows.deploy(trx, (request.body ?? {}) as Record<string, unknown>, request.user!.id),
    })),
  );

  app.post('/api/flows/validate', { preHandler: [requireAdmin] }, async (request) => {
    const problems = checkDefinition((request.body as { definition?: unknown } | undefined)?.definition);
    return { valid: problems.length === 0, problems };
  });
}
