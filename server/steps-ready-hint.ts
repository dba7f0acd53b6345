import type { Logger } from '../common/log.js';
import { createClusterClient } from '../common/protocol/cluster-client.js';
import { BOOSTER_PATH } from '../common/protocol/headers.js';

/**
 * After a transaction that made a step ready commits, tell the boosters so the active one
 * dispatches it now rather than at its next poll. Best effort (polling remains the
 * guarantee); calls are coalesced so a burst of tickets costs one round of requests.
 */
export function createStepsReadyHint(opts: { boosterUrls: readonly string[]; secret: string; nodeId: string; log: Logger; timeoutMs?: number }): () => void {
  let inFlight = false;
  let again = false;
  const client = createClusterClient({ secret: opts.secret, nodeId: opts.nodeId, timeoutMs: opts.timeoutMs ?? 1000 });
  const sendOnce = async () => {
    for (const r of await client.toEveryBooster(opts.boosterUrls, 'POST', BOOSTER_PATH.stepsReady, '')) {
      if (!r.ok) opts.log.debug({ url: r.url, status: r.status, error: r.error }, 'steps-ready hint not delivered');
    }
  };
  return function hint(): void {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    void (async () => {
      do {
        again = false;
        await sendOnce();
      } while (again);
      inFlight = false;
    })();
  };
}
