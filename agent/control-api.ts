import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CommonErrors, isOmflowError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { verifyClusterRequest } from '../common/protocol/cluster-auth.js';
import { AGENT_PATH } from '../common/protocol/headers.js';
import { parsePatchNotice, type PatchNotice } from '../common/protocol/messages.js';

export interface ControlHandlers {
  status(): unknown;
  drain(): Promise<unknown>;
  undrain(): Promise<unknown>;
  restart(): Promise<unknown>;
  patchNotice(notice: PatchNotice): unknown;
}

const MAX_BODY = 64 * 1024;

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_BODY) {
        reject(CommonErrors.COMMON_ERR_PAYLOAD_TOO_LARGE());
        req.destroy();
      } else parts.push(d);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** The agent control API: every call is signed with the cluster secret (HMAC, see cluster-auth.ts). */
export function buildControlApi(opts: { secret: string; handlers: ControlHandlers; log: Logger }): Server {
  const { handlers } = opts;
  return createServer(async (req, res) => {
    try {
      const body = await readBody(req);
      const path = req.url ?? '/';
      const auth = verifyClusterRequest(opts.secret, { method: req.method ?? 'GET', path, headers: req.headers, body });
      if (!auth.ok) throw CommonErrors.COMMON_ERR_CLUSTER_AUTH(`cluster authentication failed (${auth.reason})`);
      const route = `${req.method} ${path.split('?')[0]}`;
      switch (route) {
        case `GET ${AGENT_PATH.status}`:
          return send(res, 200, handlers.status());
        case `POST ${AGENT_PATH.drain}`:
          return send(res, 200, await handlers.drain());
        case `POST ${AGENT_PATH.undrain}`:
          return send(res, 200, await handlers.undrain());
        case `POST ${AGENT_PATH.restart}`:
          return send(res, 202, await handlers.restart());
        case `POST ${AGENT_PATH.patchNotice}`: {
          let json: unknown;
          try {
            json = JSON.parse(body.toString('utf8'));
          } catch {
            throw CommonErrors.COMMON_ERR_BAD_REQUEST('body is not JSON');
          }
          return send(res, 202, handlers.patchNotice(parsePatchNotice(json)) ?? { ok: true });
        }
        default:
          return send(res, 404, { code: 'COMMON_ERR_BAD_REQUEST', message: `no route ${route}` });
      }
    } catch (err) {
      if (isOmflowError(err)) return send(res, err.status, err.toJSON());
      opts.log.warn({ err }, 'control API error');
      return send(res, 500, { code: 'COMMON_ERR_BAD_REQUEST', message: 'internal error' });
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
