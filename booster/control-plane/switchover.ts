import type { Logger } from '../../common/log.js';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { BoosterErrors } from '../errors.js';
import type { Leadership } from '../leadership/leadership.js';
import type { PeerAnswer } from '../leadership/peer-probe.js';
import type { ClusterEvents } from './cluster-events.js';

/**
 * `omflow switchover [--to ID]`: the active hands the leader lease to the standby without a
 * process stopping (Patroni's switchover, ADR 0019). The standby is checked first (it must
 * answer a signed probe as the standby, and be the one named); the lease row is written over
 * to it at the next epoch, it is told to take it up, and this booster steps down. Until the
 * standby confirmed, this one still answers /_booster/active; afterwards it keeps proxying for
 * OMFLOW_BOOSTER_SWITCHOVER_SERVE_MS, so no client sees a gap.
 */
export interface SwitchoverResult {
  from: string;
  to: string;
  epoch: number;
  previousEpoch: number;
  /** The standby answered that it took the lease up (else it adopts it at its next lease poll). */
  confirmed: boolean;
  /** From the lease write to the standby's answer. */
  handoverMs: number;
}

export interface SwitchoverDeps {
  nodeId: string;
  secret: string;
  peerUrl: string | null;
  leadership: Leadership;
  /** A fresh signed probe of the peer (the active's last answer may be old). */
  probePeer: (() => Promise<PeerAnswer>) | null;
  events: Pick<ClusterEvents, 'record'>;
  log: Logger;
  clock: () => number;
  /** Resolves once every data-plane worker routes on the new state. */
  synced: () => Promise<void>;
}

export function createSwitchover(d: SwitchoverDeps) {
  const client = createClusterClient({ secret: d.secret, nodeId: d.nodeId, timeoutMs: 2000 });
  return {
    async switchover(to: string | null, by: string): Promise<SwitchoverResult> {
      const noCandidate = (message: string | undefined, details: unknown) => BoosterErrors.BOOSTER_ERR_SWITCHOVER_NO_CANDIDATE(message, details);
      if (!d.probePeer || !d.peerUrl) throw noCandidate('This booster has no peer (OMFLOW_BOOSTER_PEER_URL) to hand over to', { peer: null });
      const peer = await d.probePeer();
      if (peer.state !== 'standby' || !peer.nodeId) throw noCandidate(undefined, { peer: d.peerUrl, answered: peer.state });
      if (to && to !== peer.nodeId) throw noCandidate(`The standby is ${peer.nodeId}, not ${to}`, { peer: d.peerUrl, standby: peer.nodeId, to });
      const target = { nodeId: peer.nodeId, url: peer.url ?? d.peerUrl };
      const started = d.clock();
      const done = await d.leadership.handOver(target, async (epoch) => {
        // Every data-plane worker stamps the new epoch before the standby makes the servers see it.
        await d.synced();
        const r = await client.call(d.peerUrl!, 'POST', BOOSTER_PATH.takeover, { epoch, from: d.nodeId });
        if (!r.ok)
          d.log.warn({ peer: d.peerUrl, status: r.status, error: r.error }, 'the standby did not confirm the takeover; it adopts the lease at its next poll');
        return r.ok && (r.body as { active?: unknown } | null)?.active === true;
      });
      if (!done) throw BoosterErrors.BOOSTER_ERR_LEASE_NOT_HELD();
      const result: SwitchoverResult = { from: d.nodeId, to: target.nodeId, ...done, handoverMs: Math.round(d.clock() - started) };
      await d.synced();
      d.log.info({ ...result, by }, 'switchover: the active role is handed over');
      await d.events.record('switchover', target.nodeId, { ...result, by });
      return result;
    },

    /** Standby side: the lease row names us at `epoch`; take it up now. */
    async takeover(epoch: number, from: string): Promise<{ active: boolean; epoch: number }> {
      const active = await d.leadership.takeOver(epoch);
      d.log.info(
        { epoch, from, active },
        active ? 'took over the active role (switchover)' : 'takeover call refused: the lease does not name this booster at that epoch',
      );
      return { active, epoch: d.leadership.currentEpoch() };
    },
  };
}
