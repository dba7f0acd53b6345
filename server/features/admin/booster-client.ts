import { type ClusterReply, createClusterClient } from '../../../common/protocol/cluster-client.js';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';

/**
 * Signed calls from the admin pages to the boosters (status, events, drain, license-changed).
 * Every call is bounded by a short timeout: a dead booster must not hang an admin page.
 */
export type BoosterReply = ClusterReply;

export function createBoosterClient(opts: { urls: string[]; secret: string; nodeId: string; timeoutMs?: number }) {
  const client = createClusterClient({ secret: opts.secret, nodeId: opts.nodeId, timeoutMs: opts.timeoutMs ?? 2000 });
  const call = (base: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<BoosterReply> =>
    client.call(base, method, path, body as object | undefined);
  const all = (method: 'GET' | 'POST', path: string, body?: unknown) => client.toEveryBooster(opts.urls, method, path, body as object | undefined);

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
