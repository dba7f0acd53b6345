import { type Dispatcher, request } from 'undici';
import { audienceOf, signClusterRequest } from './cluster-auth.js';
import { HEADER } from './headers.js';

/**
 * The one client for signed cluster calls (agents, servers, admin pages, boosters, CLI).
 * Every send is signed anew (fresh nonce, the receiver as audience), every call has its own
 * timeout, and a failure is a reply with `ok: false`, never a throw: callers decide whether a
 * booster that is down matters.
 */
export interface ClusterReply {
  url: string;
  ok: boolean;
  /** 0 when no answer arrived (refused, timed out). */
  status: number;
  /** Parsed JSON, the text when not JSON, null when empty or no answer. */
  body: unknown;
  error?: string;
}

export interface CallOptions {
  timeoutMs?: number;
  headers?: Record<string, string>;
}

export type Payload = string | Uint8Array | object | undefined;

export interface ClusterClient {
  readonly nodeId: string;
  call(base: string, method: string, path: string, payload?: Payload, opts?: CallOptions): Promise<ClusterReply>;
  /**
   * The same call to every booster: the one last seen active first, then the others (in
   * parallel). Replies come back in the order of `urls`.
   */
  toEveryBooster(urls: readonly string[], method: string, path: string, payload?: Payload, opts?: CallOptions): Promise<ClusterReply[]>;
  /** The booster that last said it is active (reply body or X-Booster-Active), if any. */
  readonly knownActive: string | null;
}

function encode(payload: Payload): string | Uint8Array | undefined {
  if (payload === undefined || typeof payload === 'string' || payload instanceof Uint8Array) return payload;
  return JSON.stringify(payload);
}

export function createClusterClient(opts: { secret: string; nodeId: string; timeoutMs?: number; dispatcher?: Dispatcher }): ClusterClient {
  const defaultTimeout = opts.timeoutMs ?? 2000;
  let knownActive: string | null = null;

  function learnActive(base: string, status: number, headers: Record<string, string | string[] | undefined>, body: unknown): void {
    const header = headers[HEADER.active];
    const b = body && typeof body === 'object' ? (body as { role?: unknown; activeUrl?: unknown }) : {};
    if (b.role === 'active') knownActive = base;
    else if (typeof b.activeUrl === 'string') knownActive = b.activeUrl.replace(/\/+$/, '');
    else if (typeof header === 'string' && status < 500) knownActive = header.replace(/\/+$/, '');
  }

  async function call(base: string, method: string, path: string, payload?: Payload, o: CallOptions = {}): Promise<ClusterReply> {
    const body = encode(payload);
    const m = method.toUpperCase();
    const headers: Record<string, string> = {
      accept: 'application/json',
      ...o.headers,
      ...signClusterRequest(opts.secret, opts.nodeId, m, path, body, Date.now(), { audience: audienceOf(base) }),
    };
    if (body !== undefined && typeof payload === 'object' && !(payload instanceof Uint8Array)) headers['content-type'] = 'application/json';
    else if (typeof payload === 'string') headers['content-type'] ??= 'application/json';
    try {
      const res = await request(new URL(path, base), {
        method: m as Dispatcher.HttpMethod,
        headers,
        body: m === 'GET' || m === 'HEAD' ? undefined : (body ?? ''),
        signal: AbortSignal.timeout(o.timeoutMs ?? defaultTimeout),
        ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
      });
      const raw = await res.body.text();
      let parsed: unknown = raw || null;
      if (raw) {
        try {
          parsed = JSON.parse(raw);
        } catch {
          // Not JSON (metrics, an HTML error page): keep the text.
        }
      }
      learnActive(base, res.statusCode, res.headers, parsed);
      return { url: base, ok: res.statusCode >= 200 && res.statusCode < 300, status: res.statusCode, body: parsed };
    } catch (err) {
      return { url: base, ok: false, status: 0, body: null, error: (err as Error).message };
    }
  }

  async function toEveryBooster(urls: readonly string[], method: string, path: string, payload?: Payload, o?: CallOptions): Promise<ClusterReply[]> {
    if (urls.length === 0) return [];
    const first = urls.includes(knownActive ?? '') ? (knownActive as string) : urls[0];
    const firstReply = await call(first, method, path, payload, o);
    const rest = await Promise.all(urls.filter((u) => u !== first).map((u) => call(u, method, path, payload, o)));
    const byUrl = new Map([[first, firstReply], ...rest.map((r) => [r.url, r] as const)]);
    return urls.map((u) => byUrl.get(u) as ClusterReply);
  }

  return {
    nodeId: opts.nodeId,
    call,
    toEveryBooster,
    get knownActive() {
      return knownActive;
    },
  };
}
