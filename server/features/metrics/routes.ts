import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { CommonErrors } from '../../../common/errors.js';
import { bearerMatches, clusterAuthError, ReplayGuard, verifyClusterRequest } from '../../../common/protocol/cluster-auth.js';
import { HEADER, SERVER_PATH } from '../../../common/protocol/headers.js';

/**
 * GET /_internal/metrics: Prometheus reads it with the operator token (OMFLOW_SERVER_OPERATOR_TOKEN)
 * or a cluster signature, the same rules as a booster's /_booster/metrics; under /_internal/, a
 * booster never proxies it, so only the server's own port answers it.
 * POST /_internal/reload (signed, from the server's agent on `systemctl reload`): the settings
 * marked reloadable are read again; the reply names what changed.
 */
export async function metricsRoutes(
  app: FastifyInstance,
  opts: {
    secret: string;
    registry: Registry;
    operatorToken: () => string | undefined;
    audiences?: () => readonly string[] | undefined;
    reload?: () => Promise<unknown>;
  },
): Promise<void> {
  const replay = new ReplayGuard();
  // The signature covers the exact bytes: keep the raw body (this plugin's scope only).
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  const verify = (request: FastifyRequest, body: string) => {
    const auth = verifyClusterRequest(opts.secret, { method: request.method, path: request.url, headers: request.headers, body }, Date.now(), {
      replay,
      audiences: opts.audiences?.(),
    });
    if (!auth.ok) throw clusterAuthError(auth.reason);
  };

  app.get(SERVER_PATH.metrics, async (request, reply) => {
    if (!bearerMatches(request.headers.authorization, opts.operatorToken())) {
      if (request.headers[HEADER.clusterSignature] === undefined) throw CommonErrors.COMMON_ERR_OPERATOR_AUTH();
      verify(request, '');
    }
    return reply.type(opts.registry.contentType).send(await opts.registry.metrics());
  });

  app.post(SERVER_PATH.reload, async (request) => {
    verify(request, typeof request.body === 'string' ? request.body : '');
    if (!opts.reload) throw CommonErrors.COMMON_ERR_BAD_REQUEST('this server was not started with a configuration it can read again');
    return { changes: await opts.reload() };
  });
}
