import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { hostname, networkInterfaces } from 'node:os';
import { CommonErrors, type OmflowError } from '../errors.js';
import { HEADER } from './headers.js';

/**
 * Cluster-internal calls carry an HMAC-SHA256 over timestamp, nonce, audience, method, path
 * and the body's sha256, keyed by OMFLOW_CLUSTER_SECRET. The secret never crosses the wire;
 * the timestamp bounds a call to MAX_SKEW_MS either side, and the receiver remembers every
 * nonce for that window (ReplayGuard), so a captured call is refused the second time. The
 * audience (host:port the sender dialled) keeps a call signed for booster A off booster B.
 */
export const MAX_SKEW_MS = 60_000;

export type Body = string | Uint8Array | undefined | null;

function bodyHash(body: Body): string {
  return createHash('sha256')
    .update(body ?? '')
    .digest('hex');
}

function mac(secret: string, ts: string, nonce: string, audience: string, method: string, path: string, body: Body): string {
  return createHmac('sha256', secret)
    .update(`${ts}\n${nonce}\n${audience}\n${method.toUpperCase()}\n${path}\n${bodyHash(body)}`)
    .digest('hex');
}

/** The audience of a base URL: its host[:port], as URL normalises it (lower case, default port dropped). */
export function audienceOf(url: string): string {
  return new URL(url).host;
}

/**
 * The audiences a receiver accepts: the host of each URL it is known by, plus the same port
 * on every local interface address, the host name and loopback (senders may dial an IP, the
 * dev cluster and local tools dial 127.0.0.1 or localhost).
 */
export function audiencesFor(urls: readonly (string | undefined | null)[]): string[] {
  const out = new Set<string>();
  const locals = ['127.0.0.1', 'localhost', '[::1]', hostname().toLowerCase()];
  for (const addrs of Object.values(networkInterfaces())) for (const a of addrs ?? []) locals.push(a.family === 'IPv6' ? `[${a.address}]` : a.address);
  for (const u of urls) {
    if (!u) continue;
    const url = new URL(u);
    out.add(url.host);
    for (const h of locals) out.add(url.port ? `${h}:${url.port}` : h);
  }
  return [...out];
}

/** Headers to add to a cluster-internal request. `path` includes the query string. Call once per send. */
export function signClusterRequest(
  secret: string,
  nodeId: string,
  method: string,
  path: string,
  body?: Body,
  now = Date.now(),
  opts: { audience?: string; nonce?: string } = {},
): Record<string, string> {
  const ts = String(now);
  const nonce = opts.nonce ?? randomBytes(16).toString('hex');
  const audience = opts.audience ?? '';
  const headers: Record<string, string> = {
    [HEADER.clusterTimestamp]: ts,
    [HEADER.clusterNonce]: nonce,
    [HEADER.clusterSignature]: mac(secret, ts, nonce, audience, method, path, body),
    [HEADER.clusterNode]: nodeId,
  };
  if (audience) headers[HEADER.clusterAudience] = audience;
  return headers;
}

export type ClusterAuthFailure = 'missing' | 'skew' | 'signature' | 'audience' | 'replay' | 'busy';
export type ClusterAuthResult = { ok: true; nodeId: string } | { ok: false; reason: ClusterAuthFailure };

/**
 * Nonces seen within the signature window, per receiver. Bounded: at most `maxEntries`
 * (window × rate: 2 minutes × 800 calls/s by default); only validly signed calls get in, so
 * only a cluster member can fill it, and then new calls are refused ('busy'), never admitted
 * unchecked.
 */
export class ReplayGuard {
  readonly #seen = new Map<string, number>();
  #sinceSweep = 0;

  constructor(readonly maxEntries = 100_000) {}

  get size(): number {
    return this.#seen.size;
  }

  /** Records `nonce` until `expiresAt`; 'replay' when it is already recorded. */
  admit(nonce: string, expiresAt: number, now = Date.now()): 'ok' | 'replay' | 'busy' {
    const known = this.#seen.get(nonce);
    if (known !== undefined && known >= now) return 'replay';
    if (++this.#sinceSweep >= 1024 || this.#seen.size >= this.maxEntries) this.#sweep(now);
    if (this.#seen.size >= this.maxEntries) return 'busy';
    this.#seen.set(nonce, expiresAt);
    return 'ok';
  }

  #sweep(now: number): void {
    this.#sinceSweep = 0;
    for (const [n, exp] of this.#seen) if (exp < now) this.#seen.delete(n);
  }
}

export interface VerifyOptions {
  /** Remembers nonces: without it a valid call is accepted any number of times within the window. */
  replay?: ReplayGuard;
  /**
   * When given, a call signed for another audience, or for none, is refused: a call captured on
   * its way to one receiver cannot be replayed to another (each has its own ReplayGuard).
   */
  audiences?: readonly string[];
}

/** Constant-time check of a cluster-internal request; the nonce is only recorded when the signature holds. */
export function verifyClusterRequest(
  secret: string,
  req: { method: string; path: string; headers: Record<string, string | string[] | undefined>; body?: Body },
  now = Date.now(),
  opts: VerifyOptions = {},
): ClusterAuthResult {
  const ts = req.headers[HEADER.clusterTimestamp];
  const sig = req.headers[HEADER.clusterSignature];
  const nonce = req.headers[HEADER.clusterNonce];
  const node = req.headers[HEADER.clusterNode];
  const aud = req.headers[HEADER.clusterAudience] ?? '';
  if (
    typeof ts !== 'string' ||
    typeof sig !== 'string' ||
    typeof nonce !== 'string' ||
    typeof aud !== 'string' ||
    !/^\d{1,16}$/.test(ts) ||
    !/^[0-9a-f]{64}$/.test(sig) ||
    !/^[0-9a-f]{16,64}$/.test(nonce) ||
    aud.length > 300
  )
    return { ok: false, reason: 'missing' };
  if (Math.abs(now - Number(ts)) > MAX_SKEW_MS) return { ok: false, reason: 'skew' };
  const expected = Buffer.from(mac(secret, ts, nonce, aud, req.method, req.path, req.body), 'hex');
  if (!timingSafeEqual(expected, Buffer.from(sig, 'hex'))) return { ok: false, reason: 'signature' };
  if (opts.audiences && !opts.audiences.includes(aud.toLowerCase())) return { ok: false, reason: 'audience' };
  if (opts.replay) {
    const r = opts.replay.admit(nonce, Number(ts) + MAX_SKEW_MS, now);
    if (r !== 'ok') return { ok: false, reason: r };
  }
  return { ok: true, nodeId: typeof node === 'string' ? node : '' };
}

/** The wire error for a refused call: replays and a full cache have codes of their own. */
export function clusterAuthError(reason: ClusterAuthFailure): OmflowError {
  if (reason === 'replay') return CommonErrors.COMMON_ERR_CLUSTER_REPLAY(undefined, { reason });
  if (reason === 'busy') return CommonErrors.COMMON_ERR_CLUSTER_BUSY(undefined, { reason });
  return CommonErrors.COMMON_ERR_CLUSTER_AUTH(`cluster authentication failed (${reason})`, { reason });
}

/** Constant-time comparison of an `Authorization: Bearer` header with the configured token. */
export function bearerMatches(header: string | string[] | undefined, token: string | undefined): boolean {
  if (!token || typeof header !== 'string') return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1]), digest(token));
}
