import { randomBytes } from 'node:crypto';
import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { OmflowError } from '../common/errors.js';

/**
 * Small HTTP answers shared by the data plane and the control plane, so neither imports the
 * other: a JSON error body with a stable code, and the X-Request-ID generator.
 */
export function sendError(res: ServerResponse, err: { code: string; status: number; message: string }, extra?: Record<string, string>): void {
  answerError(res, err, extra);
}

/** sendError, returning the body's length (0: the answer had begun, the connection is cut instead) for the access log. */
export function answerError(res: ServerResponse, err: { code: string; status: number; message: string }, extra?: Record<string, string>): number {
  if (res.headersSent) {
    res.destroy();
    return 0;
  }
  const body = JSON.stringify({ code: err.code, message: err.message });
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extra };
  if (err.status === 503 && !headers['retry-after']) headers['retry-after'] = '1';
  res.writeHead(err.status, headers);
  res.end(body);
  return headers['content-length'] as number;
}

/** X-Request-ID when the client sent none: a per-process random prefix and a counter (unique, cheap). */
const ID_PREFIX = randomBytes(6).toString('hex');
let idSeq = 0;
export function nextRequestId(): string {
  return `${ID_PREFIX}-${(++idSeq).toString(36)}`;
}

/** A whole HTTP/1.1 answer with the error's code, for a socket no response object writes to (an upgrade); the connection closes. */
export function rawAnswer(err: OmflowError): string {
  const body = JSON.stringify({ code: err.code, message: err.message });
  return `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? ''}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

export const UPGRADE_UNAVAILABLE = 'HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';

/**
 * An upgrade answered and closed by the booster. node:http hands an upgrade its socket unread:
 * ended only, it never notices its client leave and stays open for good; destroyed once the answer is out.
 */
export function refuseUpgrade(socket: Duplex, answer: string): void {
  socket.end(answer, () => socket.destroy());
}
