import { request } from 'undici';
import { signClusterRequest } from '../../../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';

/**
 * Signed calls from the admin pages to the boosters (status, events, drain, license-changed).
 * Every call is bounded by a short timeout: a dead booster must not hang an admin page.
 */
export interface BoosterReply {
  url: string;
  ok: boolean;
  status: number;
  body: unknown;
  error?: string;
}

export function createBoosterClient(opts: { urls: string[]; secret: string; nodeId: string; timeoutMs?: number }) {
  const timeoutMs = opts.timeoutMs ?? 2000;

  async function call(base: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<BoosterReply> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = { ...signClusterRequest(opts.secret, opts.nodeId, method, path, text), accept: 'application/json' };
    if (text !== undefined) headers['content-type'] = 'application/json';
    try {
      const res = await request(new URL(path, base), { method, headers, body: text, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
      const raw = await res.body.text();
      let parsed: unknown = raw;
      try {
        parsed = raw ? JSON.parse(raw) : null;
      } catch {
        // Not JSON: keep the text.
      }
      return { url: base, ok: res.statusCode >= 200 && res.statusCode < 300, status: res.statusCode, body: parsed };
    } catch (err) {
      return { url: base, ok: false, status: 0, body: null, error: (err as Error).message };
    }
  }

  const all = (method: 'GET' | 'POST', path: string, body?: unknown) => Promise.all(opts.urls.map((u) => call(u, method, path, body)));

  return {
    urls: opts.urls,
    call,
    status: () => all('GET', BOOSTER_PATH.status),
    events: (limit = 50) => all('GET', `${BOOSTER_PATH.events}?limit=${limit}`),
    /** Tells every booster to re-read license_state now (they also poll by themselves). */
    licenseChanged: () => all('POST', BOOSTER_PATH.licenseChanged, {}),
    drain: (serverId: string, reason: string) => all('POST', BOOSTER_PATH.drain(serverId), { reason }),
    undrain: (serverId: string) => all('POST', BOOSTER_PATH.undrain(serverId), {}),
  };
}

export type BoosterClient = ReturnType<typeof createBoosterClient>;
