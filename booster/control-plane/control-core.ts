import type { BoosterConfig } from '../config.js';
import type { BoosterMetrics } from '../metrics.js';
import type { ControlCore } from './control-api.js';
import type { ServerSync } from './server-sync.js';
import { createStatusView, type StatusDeps } from './status-view.js';

/**
 * What the /_booster/ API does, on the booster's parts: a heartbeat feeds the table and wakes the
 * step dispatcher, a drain or a license change is answered once every data-plane worker routes on
 * it, a metrics scrape first collects the workers' counts. Only the active's lease-needing work is
 * refused while the lease is unconfirmed (drains).
 */
export interface ControlCoreDeps extends StatusDeps {
  cfg: Pick<BoosterConfig, 'controlBodyLimit' | 'operatorToken' | 'tlsCertFile' | 'tlsKeyFile'>;
  secret: string;
  sync: ServerSync;
  metrics: BoosterMetrics;
  /** The step dispatcher. */
  steps: { poke(): void };
  /** The data-plane workers when this process is their primary (ADR 0010), else null. */
  workers: () => { synced(timeoutMs?: number): Promise<void>; collect(): Promise<void> } | null;
}

export function createControlCore(d: ControlCoreDeps): ControlCore {
  const { cfg, leadership, table, sync, gate, metrics } = d;
  const view = createStatusView(d);
  const isActive = () => leadership.role === 'active';
  return {
    secret: d.secret,
    nodeId: d.nodeId,
    bodyLimit: cfg.controlBodyLimit,
    log: d.log,
    operatorToken: cfg.operatorToken,
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
    async drain(id, draining, reason) {
      const known = await sync.drain(id, draining, reason);
      // With workers: answer only once every worker routes on the new state.
      if (known) await d.workers()?.synced();
      return known;
    },
    leaseNotHeld: () => isActive() && !leadership.holdsLease(),
    agentUrls: () => table.list.map((e) => e.agentUrl).filter((u): u is string => !!u),
    async licenseChanged() {
      await gate.refresh();
      await d.workers()?.synced();
    },
    stepsReady: () => {
      if (isActive()) d.steps.poke();
    },
  };
}
