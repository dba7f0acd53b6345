import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CommonErrors, isOmflowError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { AGENT_PATH } from '../common/protocol/headers.js';
import { type PatchNotice, parsePatchNotice } from '../common/protocol/messages.js';
import { createSignedEndpoint, sendJson as send, sendWireError } from '../common/protocol/signed-endpoint.js';

export interface ControlHandlers {
  status(): unknown;
  drain(): Promise<unknown>;
  undrain(): Promise<unknown>;
  restart(): Promise<unknown>;
  patchNotice(notice: PatchNotice): unknown;
  /** Prometheus exposition of the agent (GET /_agent/metrics). */
  metrics?(): Promise<{ contentType: string; body: string }>;
}

const MAX_BODY = 64 * 1024;

/**
 * The agent control API: every call, reads included, is signed with the cluster secret and
 * carries a fresh nonce (a replayed drain or restart is refused); see cluster-auth.ts. The one
 * exception is GET /_agent/metrics, which Prometheus reads with the operator token as it reads a
 * booster's (a signature works too).
 */
export function buildControlApi(opts: {
  secret: string;
  handlers: ControlHandlers;
  log: Logger;
  audiences?: () => readonly string[] | undefined;
  /** OMFLOW_SERVER_OPERATOR_TOKEN, read at each call (a reload changes it). */
  operatorToken?: () => string | undefined;
}): Server {
  const { handlers } = opts;
  const endpoint = createSignedEndpoint({
    secret: opts.secret,
    bodyLimit: MAX_BODY,
    audiences: opts.audiences,
    get operatorToken() {
      return opts.operatorToken?.();
    },
  });
  return createServer(async (req, res) => {
    try {
      if (handlers.metrics && req.method === 'GET' && (req.url ?? '/').split('?')[0] === AGENT_PATH.metrics) {
        await endpoint.authorizeRead(req);
        const m = await handlers.metrics();
        res.writeHead(200, { 'content-type': m.contentType });
        return void res.end(m.body);
      }
      const { value } = await endpoint.read(req);
      const route = `${req.method} ${(req.url ?? '/').split('?')[0]}`;
      switch (route) {
        case `GET ${AGENT_PATH.status}`:
          return send(res, 200, handlers.status());
        case `POST ${AGENT_PATH.drain}`:
          return send(res, 200, await handlers.drain());
        case `POST ${AGENT_PATH.undrain}`:
          return send(res, 200, await handlers.undrain());
        case `POST ${AGENT_PATH.restart}`:
          return send(res, 202, await handlers.restart());
        case `POST ${AGENT_PATH.patchNotice}`:
          return send(res, 202, handlers.patchNotice(parsePatchNotice(value)) ?? { ok: true });
        default:
          return send(res, 404, { code: CommonErrors.COMMON_ERR_BAD_REQUEST.code, message: `no route ${route}` });
      }
    } catch (err) {
      if (isOmflowError(err)) return sendWireError(res, err);
      opts.log.warn({ err }, 'control API error');
      return send(res, 500, { code: CommonErrors.COMMON_ERR_BAD_REQUEST.code, message: 'internal error' });
    }
  });
}

/** Listens on `port`; on a shared host (EADDRINUSE) takes the next free port, up to 50 further. */
export async function listenControlApi(server: Server, host: string, port: number): Promise<number> {
  for (let p = port, tries = 0; ; p++, tries++) {
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => {
          server.off('listening', onListening);
          reject(err);
        };
        const onListening = () => {
          server.off('error', onError);
          resolve();
        };
        server.once('error', onError);
        server.once('listening', onListening);
        server.listen(p, host);
      });
      return (server.address() as AddressInfo).port;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || port === 0 || tries >= 50) throw err;
    }
  }
}
