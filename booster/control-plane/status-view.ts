import type { Logger } from '../../common/log.js';
import type { DbPressurePolicy } from '../data-plane/db-pressure.js';
import type { Leadership } from '../leadership/leadership.js';
import type { LicenseGate } from '../license/gate.js';
import type { ServerTable } from '../server-table/server-table.js';
import type { ClusterStore } from './cluster-store.js';

/**
 * The open read views of `/_booster/status` and `/_booster/events`. They are unauthenticated
 * reads on the public port: however often they are asked, the shared database sees at most one
 * query of each per second from this booster.
 */
export interface StatusDeps {
  nodeId: string;
  version: string | null;
  peerUrl: string | null;
  startedAt: number;
  selfUrl: () => string;
  clock: () => number;
  table: ServerTable;
  leadership: Leadership;
  gate: LicenseGate;
  store: ClusterStore;
  log: Logger;
  dbPressure: Pick<DbPressurePolicy, 'pressuredNow' | 'share' | 'shed'>;
}

export function createStatusView(d: StatusDeps) {
  const dbView = memoizeFor(1000, async () => {
    try {
      const [boosters, rollout] = await Promise.all([d.store.listNodes(), d.store.latestRollout()]);
      return { boosters: boosters as unknown[], rollout: rollout as unknown };
    } catch (err) {
      d.log.warn({ err }, 'could not read booster nodes or rollout');
      return { boosters: [] as unknown[], rollout: null as unknown };
    }
  });
  const recentEvents = new Map<number, () => Promise<unknown>>();
  const { table, leadership, gate } = d;

  return {
    async status() {
      const now = d.clock();
      const used = table.list.filter((e) => table.stateOf(e, now) !== 'down').length;
      const { boosters, rollout } = await dbView();
      return {
        role: leadership.role,
        epoch: leadership.currentEpoch(),
        pid: process.pid,
        nodeId: d.nodeId,
        url: d.selfUrl(),
        version: d.version,
        peer: d.peerUrl,
        peerAlive: d.peerUrl ? leadership.peerAlive : null,
        activeUrl: leadership.activeUrl,
        uptimeMs: Date.now() - d.startedAt,
        licenseAllowsDistribution: gate.allowsDistribution(),
        dbPressure: { pressured: d.dbPressure.pressuredNow(), admitShare: d.dbPressure.share, shed: d.dbPressure.shed },
        servers: table.list.map((e) => ({
          id: e.id,
          url: e.url,
          state: table.stateOf(e, now),
          inflight: e.inflight,
          concurrencyLimit: table.concurrencyLimitOf(e),
          awaitingHeaders: e.pending,
          noLoadMs: e.limiter && Number.isFinite(e.limiter.baselineMs) ? Math.round(e.limiter.baselineMs * 10) / 10 : null,
          load: table.reportedLoad(e),
          version: e.version,
          agentUrl: e.agentUrl,
          agentState: e.agentState,
          draining: e.drainingDb || !!e.heartbeat?.draining,
          weight: e.weight,
          routed: e.licensed,
          reason: e.licensed ? null : 'beyond the licensed server count',
          lastHeartbeatMsAgo: e.heartbeatAt ? Math.round(now - e.heartbeatAt) : null,
          runningSteps: e.heartbeat?.runningSteps ?? null,
          stepCapacity: e.heartbeat?.stepCapacity ?? null,
          db: e.heartbeat?.db ?? null,
        })),
        license: gate.status(used),
        boosters,
        rollout,
      };
    },
    events(limit: number): ReturnType<ClusterStore['recentEvents']> {
      let read = recentEvents.get(limit);
      if (!read) recentEvents.set(limit, (read = memoizeFor(1000, () => d.store.recentEvents(limit))));
      return read() as ReturnType<ClusterStore['recentEvents']>;
    },
  };
}

/** Runs `fn` at most once per `ttlMs`; callers in between share the last (or pending) answer. */
function memoizeFor<T>(ttlMs: number, fn: () => Promise<T>): () => Promise<T> {
  let at = -Infinity;
  let value: Promise<T> | undefined;
  return () => {
    const now = performance.now();
    if (!value || now - at >= ttlMs) {
      at = now;
      value = fn();
      value.catch(() => (at = -Infinity));
    }
    return value;
  };
}
