import { signClusterRequest } from '../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../common/protocol/headers.js';
import type { Logger } from '../common/log.js';

/**
 * After a transaction that made a step ready commits, tell the boosters so the active one
 * dispatches it now rather than at its next poll. Best effort (polling remains the
 * guarantee); calls are coalesced so a burst of tickets costs one round of requests.
 */
export function createStepsReadyHint(opts: { boosterUrls: readonly string[]; secret: string; nodeId: string; log: Logger; timeoutMs?: number }): () => void {
  let inFlight = false;
  let again = false;
  const sendOnce = () =>
    Promise.all(
      opts.boosterUrls.map((url) =>
        fetch(url + BOOSTER_PATH.stepsReady, {
          method: 'POST',
          headers: signClusterRequest(opts.secret, opts.nodeId, 'POST', BOOSTER_PATH.stepsReady, ''),
          signal: AbortSignal.timeout(opts.timeoutMs ?? 1000),
        }).then(
          (r) => r.arrayBuffer(),
          (err) => opts.log.debug({ err, url }, 'steps-ready hint not delivered'),
        ),
      ),
    );
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
