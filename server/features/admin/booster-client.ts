import { type ClusterReply, createClusterClient } from '../../../common/protocol/cluster-client.js';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';

/**
 * Signed calls from the admin pages to the boosters (status, events, license-changed, and the
 * operator commands: drain, undrain, weight, retire, switchover, maintenance).
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
    // The operator commands go to one booster (the rows they write are the cluster's, so the
    // other one follows within a second); `by` is the admin, named in the event log.
    drain: (serverId: string, by: string, reason?: string) => command(BOOSTER_PATH.drain(serverId), { reason, by }),
    undrain: (serverId: string, by: string) => command(BOOSTER_PATH.undrain(serverId), { by }),
    weight: (serverId: string, weight: number, by: string) => command(BOOSTER_PATH.weight(serverId), { weight, by }),
    retire: (serverId: string, by: string) => command(BOOSTER_PATH.retire(serverId), { by }),
    /** Only the active takes it: a standby's refusal sends it on to the next booster. */
    switchover: (to: string, by: string) => command(BOOSTER_PATH.switchover, { to, by }),
    maintenance: (m: { on: boolean; message?: string; retryAfterS?: number; by: string }) => command(BOOSTER_PATH.maintenance, m),
  };

  /** One booster takes the command: the one last seen active first; on no answer, a 5xx or "not the active", the next. */
  async function command(path: string, body: object): Promise<BoosterReply> {
    const order = [...new Set([client.knownActive, ...opts.urls].filter((u): u is string => !!u))];
    let last: BoosterReply = { url: '', ok: false, status: 0, body: null, error: 'no booster configured' };
    for (const url of order) {
      last = await call(url, 'POST', path, body);
      const notActive = last.status === 409 && (last.body as { code?: string } | null)?.code === 'BOOSTER_ERR_NOT_ACTIVE';
      if (last.status > 0 && last.status < 500 && !notActive) return last;
    }
    return last;
  }
}

export type BoosterClient = ReturnType<typeof createBoosterClient>;
