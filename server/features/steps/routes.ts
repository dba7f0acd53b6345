import type { FastifyInstance } from 'fastify';
import type { Database } from '../../../common/db/create-database.js';
import { CommonErrors } from '../../../common/errors.js';
import { clusterAuthError, ReplayGuard, verifyClusterRequest } from '../../../common/protocol/cluster-auth.js';
import type { EpochFence } from '../../../common/protocol/epoch.js';
import { SERVER_PATH } from '../../../common/protocol/headers.js';
import { parseStepDispatch } from '../../../common/protocol/messages.js';
import { markStepStarted, releaseStep } from '../../../common/protocol/steps.js';
import { traceParentOf } from '../../../common/protocol/trace-context.js';
import { ServerErrors } from '../../errors.js';
import type { Runtime } from '../../runtime.js';
import type { StepRunner } from './runner.js';

/**
 * POST /_internal/steps/dispatch (booster → server), signed with the cluster secret.
 * Order matters: authenticate, then fence (a stale epoch changes nothing), then take the
 * step (markStepStarted: only while it is assigned to us at that epoch), then 202 and run.
 */
export async function stepsRoutes(
  app: FastifyInstance,
  opts: {
    db: Database;
    secret: string;
    nodeId: string;
    fence: EpochFence;
    runtime: Runtime;
    runner: StepRunner;
    /** Audiences this server accepts (its URL, known once listening); a dispatch signed for another server is refused. */
    audiences?: () => readonly string[] | undefined;
  },
): Promise<void> {
  const { db, secret, nodeId, fence, runtime, runner } = opts;
  // The signature covers the exact bytes: keep the raw body (this plugin's scope only).
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  // A captured dispatch sent again is refused before it reaches the fence.
  const replay = new ReplayGuard();

  app.post(SERVER_PATH.dispatchStep, async (request, reply) => {
    const raw = typeof request.body === 'string' ? request.body : '';
    const auth = verifyClusterRequest(secret, { method: request.method, path: request.url, headers: request.headers, body: raw }, Date.now(), {
      replay,
      audiences: opts.audiences?.(),
    });
    if (!auth.ok) throw clusterAuthError(auth.reason);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      throw CommonErrors.COMMON_ERR_BAD_REQUEST('step dispatch: body is not JSON');
    }
    const d = parseStepDispatch(parsed);
    if (!fence.admit(d.epoch)) throw ServerErrors.SERVER_ERR_STALE_EPOCH(undefined, { epoch: d.epoch, highest: fence.highest });
    const hold = { stepId: d.stepId, serverId: nodeId, epoch: d.epoch };
    if (runtime.draining || runtime.runningSteps >= runtime.stepCapacity) {
      await releaseStep(db.knex, { ...hold, delayMs: 0 });
      throw runtime.draining ? ServerErrors.SERVER_ERR_DRAINING() : ServerErrors.SERVER_ERR_STEP_CAPACITY();
    }
    if (!(await markStepStarted(db.knex, { ...hold, leaseMs: d.leaseMs })))
      throw ServerErrors.SERVER_ERR_STEP_NOT_HELD(undefined, { stepId: d.stepId, epoch: d.epoch });
    runner.start({ stepId: d.stepId, epoch: d.epoch, leaseMs: d.leaseMs, traceParent: traceParentOf(request.headers.traceparent) });
    return reply.code(202).send({ accepted: true, stepId: d.stepId, nodeId });
  });
}
