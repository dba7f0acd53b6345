import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/**
 * Small HTTP answers shared by the data plane and the control plane, so neither imports the
 * other: a JSON error body with a stable code, and the X-Request-ID generator.
 */
export function sendError(res: ServerResponse, err: { code: string; status: number; message: string }, extra?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ code: err.code, message: err.message });
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extra };
  if (err.status === 503 && !headers['retry-after']) headers['retry-after'] = '1';
  res.writeHead(err.status, headers);
  res.end(body);
}

/** X-Request-ID when the client sent none: a per-process random prefix and a counter (unique, cheap). */
const ID_PREFIX = randomBytes(6).toString('hex');
let idSeq = 0;
export function nextRequestId(): string {
  return `${ID_PREFIX}-${(++idSeq).toString(36)}`;
}
