import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Database } from '../../../common/db/create-database.js';
import { getHelpers } from '../../../common/db/helpers/index.js';
import { migrationStatus } from '../../../common/db/migrate.js';
import { CommonErrors } from '../../../common/errors.js';
import { HEADER } from '../../../common/protocol/headers.js';
import { ServerErrors } from '../../errors.js';
import { DB_RETRY_AFTER_S } from '../../http/errors.js';
import type { Runtime } from '../../runtime.js';

/**
 * /healthz: the process and its event loop answer (no I/O; it says whether the database is
 * reachable as this process last saw it). /readyz: a database round trip and no pending
 * migration, bounded by `timeoutMs`; 503 while draining. A database outage shorter than
 * OMFLOW_DB_OUTAGE_GRACE_MS keeps a server that was ready ready (200, `database: 'unreachable'`):
 * every server shares the database, so marking them down buys nothing for a hiccup. After the
 * grace: 503 SERVER_ERR_DB_UNAVAILABLE, which agents never answer with a restart (ADR 0009).
 */
/**
 * A database that does not answer at all (a stall: SIGSTOP, a full disk, a lock pile-up) makes the
 * ping hang, and the monitor needs a second or more to call it unreachable. The boosters' check
 * gives up after OMFLOW_BOOSTER_HEALTH_TIMEOUT_MS (500 ms) and takes the server out of rotation
 * until its next deep check (5 s): so a server that was ready answers from the grace rule once
 * the ping has been silent this long, instead of waiting for `timeoutMs`.
 */
const SILENT_DB_ANSWER_MS = 250;

export async function healthRoutes(app: FastifyInstance, opts: { db: Database; runtime: Runtime; timeoutMs: number }): Promise<void> {
  const { db, runtime, timeoutMs } = opts;
  let migrationsCurrent = false;
  // Probes are for the boosters and the agent, which call the server directly. A request that
  // came through a booster's data plane (it always adds X-Forwarded-For) is a user's: no node
  // ids or versions for them, and no database round trip per anonymous request.
  app.addHook('onRequest', async (request) => {
    if (request.headers['x-forwarded-for'] !== undefined) throw ServerErrors.SERVER_ERR_NOT_FOUND();
  });

  const availability = db.availability;
  const dbState = () =>
    availability ? { database: availability.isUp() ? ('reachable' as const) : ('unreachable' as const), dbDownMs: availability.downForMs() } : {};

  app.get('/healthz', async () => ({
    ...dbState(),
    status: 'ok',
    nodeId: runtime.nodeId,
    version: runtime.version,
    draining: runtime.draining,
    // The agent waits for in-flight work to reach zero before stopping a drained server.
    inflight: Math.max(0, runtime.inflight - 1) /* not counting this probe */,
    runningSteps: runtime.runningSteps,
    eventLoopLagMs: runtime.eventLoopLagMs(),
  }));

  /** The answer while the database is unreachable: ready within the grace (if it was ready before), else 503. */
  function duringOutage(reply: FastifyReply, started: number) {
    const downMs = availability?.downForMs() ?? 0;
    const graceMs = availability?.graceMs ?? 0;
    if (migrationsCurrent && !runtime.draining && downMs < graceMs)
      return reply
        .code(200)
        .send({ status: 'ready', database: 'unreachable', dbDownMs: downMs, graceMs, nodeId: runtime.nodeId, draining: false, tookMs: Date.now() - started });
    if (runtime.draining) return null;
    return reply
      .code(503)
      .header('retry-after', String(DB_RETRY_AFTER_S))
      .header(HEADER.dbUnavailable, '1')
      .send({
        status: 'not-ready',
        code: ServerErrors.SERVER_ERR_DB_UNAVAILABLE.code,
        reason: 'database unreachable',
        database: 'unreachable',
        dbDownMs: downMs,
        graceMs,
        nodeId: runtime.nodeId,
        draining: runtime.draining,
        tookMs: Date.now() - started,
      });
  }

  app.get('/readyz', async (_request, reply) => {
    const started = Date.now();
    // Known unreachable: answer at once (the monitor's probe is already looking for it).
    if (availability && !availability.isUp()) {
      const sent = duringOutage(reply, started);
      if (sent) return sent;
    }
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
    // Only a server that was ready gets the early answer; a starting one waits for its real check.
    const early = availability && migrationsCurrent && !runtime.draining ? Math.min(SILENT_DB_ANSWER_MS, timeoutMs) : timeoutMs;
    const timeout = new Promise<{ ok: false; reason: string }>((resolve) => {
      timer = setTimeout(() => resolve({ ok: false, reason: `no database answer within ${early} ms` }), early);
    });
    let result: { ok: boolean; reason?: string; pending?: string[] };
    let noAnswer = false;
    try {
      result = await Promise.race([check(), timeout]);
      noAnswer = !result.ok && result.pending === undefined;
    } catch (err) {
      result = { ok: false, reason: (err as { code?: string }).code ?? 'database error' };
      noAnswer = CommonErrors.COMMON_ERR_DB_CONNECTION.is(err);
    } finally {
      clearTimeout(timer);
    }
    // No answer from the database: an outage (maybe not yet confirmed by the monitor's probe).
    if (noAnswer && availability) {
      const sent = duringOutage(reply, started);
      if (sent) return sent;
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
