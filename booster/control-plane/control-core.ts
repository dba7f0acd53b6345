import type { BoosterConfig } from '../config.js';
import type { BoosterMetrics } from '../metrics.js';
import type { ClusterEvents } from './cluster-events.js';
import type { ControlCore } from './control-api.js';
import type { MaintenanceMode } from './maintenance.js';
import type { ServerSync } from './server-sync.js';
import { createStatusView, type StatusDeps } from './status-view.js';
import type { createSwitchover } from './switchover.js';

/**
 * What the /_booster/ API does, on the booster's parts: a heartbeat feeds the table and wakes the
 * step dispatcher, a command or a license change is answered once every data-plane worker routes
 * on it, a metrics scrape first collects the workers' counts. Only the active's lease-needing work
 * is refused while the lease is unconfirmed (the commands). Each command is one event in the log,
 * with who asked; what it changes shows as the usual transition events.
 */
export interface ControlCoreDeps extends StatusDeps {
  cfg: Pick<BoosterConfig, 'controlBodyLimit' | 'operatorToken' | 'operatorWriteTokens' | 'tlsCertFile' | 'tlsKeyFile' | 'heartbeatTimeoutMs'>;
  secret: string;
  sync: ServerSync;
  metrics: BoosterMetrics;
  /** The step dispatcher. */
  steps: { poke(): void };
  /** The data-plane workers when this process is their primary (ADR 0010), else null. */
  workers: () => { synced(timeoutMs?: number): Promise<void>; collect(): Promise<void> } | null;
  events: Pick<ClusterEvents, 'record'>;
  maintenance: MaintenanceMode;
  switchover: ReturnType<typeof createSwitchover>;
}

export function createControlCore(d: ControlCoreDeps): ControlCore {
  const { cfg, leadership, table, sync, gate, metrics } = d;
  const view = createStatusView(d);
  const isActive = () => leadership.role === 'active';
  const synced = async () => {
    await d.workers()?.synced();
  };
  const { record } = d.events;
  return {
    secret: d.secret,
    nodeId: d.nodeId,
    // Read at each call: a reload changes the settings object in place.
    get bodyLimit() {
      return cfg.controlBodyLimit;
    },
    log: d.log,
    get operatorToken() {
      return cfg.operatorToken;
    },
    writeTokens: () => cfg.operatorWriteTokens,
    tokenNeedsTls: !!(cfg.tlsCertFile && cfg.tlsKeyFile),
    selfUrls: () => [d.selfUrl()],
    role: () => leadership.role,
    epoch: () => leadership.currentEpoch(),
    activeUrl: () => leadership.activeUrl,
    status: view.status,
    async metrics() {
      await d.workers()?.collect();
      for (const e of table.list) {
        metrics.inflight.labels(e.id).set(e.inflight);
        metrics.concurrencyLimit.labels(e.id).set(table.concurrencyLimitOf(e));
      }
      return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
    },
    events: view.events,
    async heartbeat(hb) {
      // A server that has seen a newer epoch proves someone acquired after us: step down at once.
      leadership.noteEpoch(hb.epochSeen);
      const e = await sync.heartbeat(hb);
      if (e && isActive() && table.stepRoom(e) > 0) d.steps.poke();
      // The server's reported load (and any state it changed) reaches every worker before the reply.
      await d.workers()?.synced(200);
    },
    agentReport: (r) => sync.agentReport(r),
    async drain(id, draining, reason, by) {
      const known = await sync.drain(id, draining, reason);
      if (!known) return false;
      // With workers: answer only once every worker routes on the new state.
      await synced();
      await record(draining ? 'drain' : 'undrain', id, { by, reason });
      return true;
    },
    async setWeight(id, weight, by) {
      if (!(await sync.setWeight(id, weight))) return false;
      await synced();
      await record('weight', id, { by, weight });
      return true;
    },
    async retire(id, by) {
      if (!(await sync.retire(id, cfg.heartbeatTimeoutMs))) return false;
      await synced();
      await record('retire', id, { by });
      return true;
    },
    switchover: (to, by) => d.switchover.switchover(to, by),
    takeover: (epoch, from) => d.switchover.takeover(epoch, from),
    async maintenance(cmd, by) {
      const status = await d.maintenance.set(cmd, by);
      await synced();
      return status;
    },
    leaseNotHeld: () => isActive() && !leadership.holdsLease(),
    agentUrls: () => table.list.map((e) => e.agentUrl).filter((u): u is string => !!u),
    async licenseChanged() {
      await gate.refresh();
      await synced();
    },
    stepsReady: () => {
      if (isActive()) d.steps.poke();
    },
  };
}
