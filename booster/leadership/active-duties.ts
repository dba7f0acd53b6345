import type { BoosterMetrics } from '../metrics.js';
import type { LeadershipListener } from './leadership.js';
import type { VipOwner } from './vip-owner.js';

/**
 * What leadership changes start and stop: the one listener of `Leadership`'s transitions. The
 * active claims the virtual IP, records the takeover, dispatches steps and purges what retention
 * lets go; riding through a
 * database outage pauses what needs the lease; stepping down undoes it all. The parts come in
 * as the little they are asked, so this file knows no step queue and no event table.
 */
export interface ActiveDutiesDeps {
  metrics: BoosterMetrics;
  vip: VipOwner | null;
  nodeId: string;
  /** Writes an entry of the booster_events log. */
  record(kind: string, subject: string | null, details?: unknown): Promise<void>;
  /** Writes this booster's booster_nodes row (role, epoch). */
  registerNode(): Promise<void>;
  /** Reads drain flags and weights from the servers rows. */
  refreshServers(): Promise<void>;
  /** The step dispatcher. */
  steps: { start(): void; poke(): void; stop(): Promise<void> };
  /** The retention purge loop (the cluster's one, on the active). */
  purge: { start(): void; stop(): Promise<void> };
  /** Longest wait for that refresh before dispatch starts anyway (ms). */
  refreshWaitMs?: number;
}

/**
 * A read of the servers rows that hangs (a connection the database host stopped answering on,
 * before TCP gives up) must not keep the new active from dispatching: the production lab saw a
 * takeover after a database blip leave every automatic step queued until a restart.
 */
const REFRESH_WAIT_MS = 2000;

/** Resolves when `p` settles or after `ms`, whichever comes first; never rejects. */
function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(
      () => {},
      () => {},
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export function createActiveDuties(d: ActiveDutiesDeps): LeadershipListener {
  const { metrics, vip, nodeId } = d;
  const refreshWaitMs = d.refreshWaitMs ?? REFRESH_WAIT_MS;
  return async (t) => {
    if (t.kind === 'became-active') {
      metrics.takeovers.inc();
      metrics.epoch.set(t.epoch);
      metrics.active.set(1);
      metrics.leaseHeld.set(1);
      void vip?.claim(t.epoch); // only now that the lease with this epoch is held
      void d.record('takeover', nodeId, { epoch: t.epoch });
      void d.registerNode().catch(() => {});
      // Fresh drain flags and weights before the first dispatch round, if the database answers soon.
      await settledWithin(d.refreshServers(), refreshWaitMs);
      d.steps.start();
      d.purge.start();
    } else if (t.kind === 'lease-unsure') {
      metrics.leaseHeld.set(0);
    } else if (t.kind === 'lease-regained') {
      metrics.leaseHeld.set(1);
      metrics.epoch.set(t.epoch);
      if (t.epoch !== t.previousEpoch) void d.record('lease-reacquired', nodeId, { epoch: t.epoch, previousEpoch: t.previousEpoch });
      void d.registerNode().catch(() => {});
      await settledWithin(d.refreshServers(), refreshWaitMs);
      d.steps.poke();
    } else {
      metrics.active.set(0);
      metrics.leaseHeld.set(0);
      void vip?.release(); // before the lease can lapse: step-down comes RENEW_DEADLINE_MS after the last good renewal
      metrics.epoch.set(0);
      void d.steps.stop();
      void d.purge.stop();
      void d.record('step-down', nodeId, { epoch: t.epoch, reason: t.reason });
      void d.registerNode().catch(() => {});
    }
  };
}
