import type { FastifyInstance } from 'fastify';
import type { Database } from '../../../common/db/create-database.js';
import { getHelpers } from '../../../common/db/helpers/index.js';
import { migrationStatus } from '../../../common/db/migrate.js';
import { ServerErrors } from '../../errors.js';
import type { Runtime } from '../../runtime.js';

/**
 * /healthz: the process and its event loop answer (no I/O). /readyz: a database round trip
 * and no pending migration, bounded by `timeoutMs`; 503 while draining.
 */
export async function healthRoutes(app: FastifyInstance, opts: { db: Database; runtime: Runtime; timeoutMs: number }): Promise<void> {
  const { db, runtime, timeoutMs } = opts;
  let migrationsCurrent = false;
  // Probes are for the boosters and the agent, which call the server directly. A request that
  // came through a booster's data plane (it always adds X-Forwarded-For) is a user's: no node
  // ids or versions for them, and no database round trip per anonymous request.
  app.addHook('onRequest', async (request) => {
    if (request.headers['x-forwarded-for'] !== undefined) throw ServerErrors.SERVER_ERR_NOT_FOUND();
  });

  app.get('/healthz', async () => ({
    status: 'ok',
    nodeId: runtime.nodeId,
    version: runtime.version,
    draining: runtime.draining,
    // The agent waits for in-flight work to reach zero before stopping a drained server.
    inflight: Math.max(0, runtime.inflight - 1) /* not counting this probe */,
    runningSteps: runtime.runningSteps,
    eventLoopLagMs: runtime.eventLoopLagMs(),
  }));

  app.get('/readyz', async (_request, reply) => {
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const check = async () => {
      await db.knex.raw(getHelpers(db.knex).pingSql());
      if (!migrationsCurrent) {
        const s = await migrationStatus(db.knex);
        if (s.pending.length) return { ok: false, reason: 'migrations pending', pending: s.pending };
        migrationsCurrent = true;
      }
      return { ok: true as boolean, reason: undefined as string | undefined, pending: undefined as string[] | undefined };
    };
    const timeout = new Promise<{ ok: false; reason: string }>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, reason: `no database answer within ${timeoutMs} ms` }), timeoutMs);
    });
    let result: { ok: boolean; reason?: string; pending?: string[] };
    try {
      result = await Promise.race([check(), timeout]);
    } catch (err) {
      result = { ok: false, reason: (err as { code?: string }).code ?? 'database error' };
    } finally {
      clearTimeout(timer);
    }
    if (result.ok && runtime.draining) result = { ok: false, reason: 'draining' };
    return reply.code(result.ok ? 200 : 503).send({
      status: result.ok ? 'ready' : 'not-ready',
      ...(result.ok ? {} : { code: 'SERVER_ERR_NOT_READY', reason: result.reason, pending: result.pending }),
      nodeId: runtime.nodeId,
      draining: runtime.draining,
      tookMs: Date.now() - started,
    });
  });
}
