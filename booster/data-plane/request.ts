import type { IncomingMessage } from 'node:http';
import { HEADER } from '../../common/protocol/headers.js';

/**
 * What the front router and the proxy read of a request, whichever path read it: node:http's
 * IncomingMessage, or a request the lean HTTP/1.1 front (http1/front-connection.ts) read whole.
 * They ask here, so only the listener knows the lean path.
 */

/** A request read whole before it is handled: its Idempotency-Key found in the one pass over the head, its body (if any) in memory. */
export abstract class HeldRequest {
  /** The whole body, already read (null: none). */
  heldBody: Buffer | null = null;
  abstract readonly idempotencyKey: string | undefined;
}

/** How the proxy sends a request's body: none, held in memory (so a retry can resend it), or streamed. */
export type BodyMode = 'none' | 'buffer' | 'stream';

/** The Idempotency-Key of either kind of request (no header object built for a held one). */
export function idempotencyKeyOf(req: IncomingMessage | HeldRequest): string | undefined {
  if (req instanceof HeldRequest) return req.idempotencyKey;
  const v = req.headers[HEADER.idempotencyKey];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** A node:http request's body mode: held when it has a Content-Length up to `replayableBodyBytes`, else streamed. */
export function bodyModeOf(req: IncomingMessage, replayableBodyBytes: number): BodyMode {
  const cl = req.headers['content-length'];
  // h2: a body may come without content-length; END_STREAM on the headers says there is none.
  if (
    req.headers['transfer-encoding'] !== undefined ||
    (cl === undefined && req.httpVersionMajor === 2 && !(req as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders)
  )
    return 'stream';
  if (cl !== undefined && cl !== '0') return Number(cl) <= replayableBodyBytes ? 'buffer' : 'stream';
  return 'none';
}
