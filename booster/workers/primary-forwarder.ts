import { Agent, type IncomingMessage, type OutgoingHttpHeaders, request, type ServerResponse } from 'node:http';
import { pipeline } from 'node:stream';
import type { Logger } from '../../common/log.js';
import { HEADER } from '../../common/protocol/headers.js';
import { BoosterErrors } from '../errors.js';
import { sendError } from '../replies.js';

/**
 * /_booster/ at a worker: the control API lives in the primary, so a worker streams the request
 * to the primary's loopback listener and the answer back (signatures unchanged).
 */
// The client's word on TLS is never passed on: the worker says it itself (HEADER.clientTls).
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'http2-settings',
  HEADER.clientTls,
]);

/**
 * The request head for the HTTP/1.1 hop to the primary: hop-by-hop headers dropped, and an
 * HTTP/2 request's pseudo-headers (`:method`, `:path`, `:scheme`, `:authority`) turned into what
 * HTTP/1.1 says instead (`:authority` is the Host); http.request throws on a name with a colon.
 */
function forwardedHeaders(rawHeaders: readonly string[], clientTls = false): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  let authority: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (name.charCodeAt(0) === 58 /* ':' */) {
      if (name === ':authority') authority = rawHeaders[i + 1];
      continue;
    }
    if (HOP_BY_HOP.has(name)) continue;
    const prev = headers[name];
    // Repeated headers stay repeated (cookie crumbs of HTTP/2 are joined as RFC 9113 8.2.3 says).
    if (prev === undefined) headers[name] = rawHeaders[i + 1];
    else if (name === 'cookie') headers[name] = `${prev}; ${rawHeaders[i + 1]}`;
    else headers[name] = Array.isArray(prev) ? [...prev, rawHeaders[i + 1]] : [String(prev), rawHeaders[i + 1]];
  }
  if (headers.host === undefined && authority !== undefined) headers.host = authority;
  // The primary reads the operator token only from clients that used TLS (ADR 0007).
  if (clientTls) headers[HEADER.clientTls] = '1';
  return headers;
}

function overTls(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
}

export interface PrimaryForwarder {
  handle(req: IncomingMessage, res: ServerResponse): void;
  close(): void;
}

/** Streams /_booster/ requests to the primary at `controlUrl`; 503 BOOSTER_ERR_LEADER_UNREACHABLE when it cannot be reached. */
export function createPrimaryForwarder(controlUrl: string, log: Logger): PrimaryForwarder {
  const target = new URL(controlUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  return {
    handle(req, res) {
      const up = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: forwardedHeaders(req.rawHeaders, overTls(req)), agent },
        (ur) => {
          // The client went away while the primary answered (a probe's deadline, a closed tab):
          // nothing to relay to. pipeline() into a destroyed stream throws, which ended the worker.
          if (res.destroyed) {
            ur.resume();
            return;
          }
          const out: string[] = [];
          const raw = ur.rawHeaders;
          for (let i = 0; i < raw.length; i += 2) if (!HOP_BY_HOP.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
          try {
            res.writeHead(ur.statusCode ?? 502, out);
          } catch (err) {
            ur.destroy();
            log.error({ err, path: req.url }, 'could not relay the answer of the primary to a /_booster/ request');
            return sendError(res, BoosterErrors.BOOSTER_ERR_INTERNAL());
          }
          pipeline(ur, res, () => {});
        },
      );
      up.on('error', () => sendError(res, BoosterErrors.BOOSTER_ERR_LEADER_UNREACHABLE()));
      pipeline(req, up, () => {});
    },
    close: () => agent.destroy(),
  };
}
