import { audienceOf, signClusterRequest } from '../../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';

/**
 * The standby's look at its peer: `GET /_booster/active`, signed so the peer adds its role and
 * epoch. It only makes the loop poll faster or step down on a newer epoch; the lease decides.
 */

/** What the peer's `GET /_booster/active` said: 200 (active), 503 with role standby, or nothing usable. */
export type PeerState = 'active' | 'standby' | 'no-answer';
export interface PeerAnswer {
  state: PeerState;
  /** The epoch it reports (0 when it did not answer). */
  epoch: number;
  /** No answer because the peer's host refused the connection: nothing listens there, the process is gone. */
  refused?: boolean;
}

/**
 * Missed probes in a row (timeouts, resets) before a peer that answered counts as gone. One lost
 * probe is load or a keep-alive race, not a dead booster, and acting on it lets a standby race the
 * riding-through active for the lease the moment the database answers again. A refused connection
 * is certain at once, so kill -9 of the process costs no extra probe.
 */
export const PEER_MISSES = 2;

export interface PeerProbeOptions {
  peerUrl: string;
  timeoutMs: number;
  secret: string;
  nodeId: string;
}

/** Peer probe of `/_booster/active`: 200 is "active", a 503 naming role standby is "standby", anything else no answer. */
export function createPeerProbe(o: PeerProbeOptions): () => Promise<PeerAnswer> {
  return async () => {
    try {
      // Signed, so the peer adds its role and epoch to the open yes-or-no answer.
      const headers = signClusterRequest(o.secret, o.nodeId, 'GET', BOOSTER_PATH.active, '', Date.now(), { audience: audienceOf(o.peerUrl) });
      const r = await fetch(o.peerUrl + BOOSTER_PATH.active, { headers, signal: AbortSignal.timeout(o.timeoutMs) });
      const body = (await r.json().catch(() => ({}))) as { role?: unknown; epoch?: unknown };
      const epoch = typeof body.epoch === 'number' ? body.epoch : 0;
      if (r.status === 200 && body.role === 'active') return { state: 'active', epoch };
      if (r.status === 503 && body.role === 'standby') return { state: 'standby', epoch };
      return { state: 'no-answer', epoch: 0 };
    } catch (err) {
      // fetch wraps the socket error: ECONNREFUSED means the peer's host is up and nothing listens.
      const refused = (err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED';
      return { state: 'no-answer', epoch: 0, refused };
    }
  };
}
