import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { HEADER } from './headers.js';

/**
 * Cluster-internal calls carry an HMAC-SHA256 over timestamp, method, path and the body's
 * sha256, keyed by OMFLOW_CLUSTER_SECRET. The secret itself never crosses the wire, and a
 * captured request is only replayable for MAX_SKEW_MS.
 */
export const MAX_SKEW_MS = 60_000;

export type Body = string | Uint8Array | undefined | null;

function bodyHash(body: Body): string {
  return createHash('sha256')
    .update(body ?? '')
    .digest('hex');
}

function mac(secret: string, ts: string, method: string, path: string, body: Body): string {
  return createHmac('sha256', secret).update(`${ts}\n${method.toUpperCase()}\n${path}\n${bodyHash(body)}`).digest('hex');
}

/** Headers to add to a cluster-internal request. `path` includes the query string. */
export function signClusterRequest(
  secret: string,
  nodeId: string,
  method: string,
  path: string,
  body?: Body,
  now = Date.now(),
): Record<string, string> {
  const ts = String(now);
  return {
    [HEADER.clusterTimestamp]: ts,
    [HEADER.clusterSignature]: mac(secret, ts, method, path, body),
    [HEADER.clusterNode]: nodeId,
  };
}

export type ClusterAuthResult = { ok: true; nodeId: string } | { ok: false; reason: 'missing' | 'skew' | 'signature' };

/** Constant-time check of a cluster-internal request. */
export function verifyClusterRequest(
  secret: string,
  req: { method: string; path: string; headers: Record<string, string | string[] | undefined>; body?: Body },
  now = Date.now(),
): ClusterAuthResult {
  const ts = req.headers[HEADER.clusterTimestamp];
  const sig = req.headers[HEADER.clusterSignature];
  const node = req.headers[HEADER.clusterNode];
  if (typeof ts !== 'string' || typeof sig !== 'string' || !/^\d{1,16}$/.test(ts) || !/^[0-9a-f]{64}$/.test(sig))
    return { ok: false, reason: 'missing' };
  if (Math.abs(now - Number(ts)) > MAX_SKEW_MS) return { ok: false, reason: 'skew' };
  const expected = Buffer.from(mac(secret, ts, req.method, req.path, req.body), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(sig, 'hex'))) return { ok: false, reason: 'signature' };
  return { ok: true, nodeId: typeof node === 'string' ? node : '' };
}
