import type { Logger } from '../../common/log.js';
import type { BoosterConfig } from '../config.js';
import { createDataPlane } from '../data-plane/data-plane.js';
import { DbPressurePolicy } from '../data-plane/db-pressure.js';
import { UpstreamPools } from '../data-plane/upstream-pools.js';
import { createMetrics, type StatsDelta } from '../metrics.js';
import { MirroredServerTable } from '../server-table/mirrored-table.js';
import { type FromWorker, type ToWorker, WORKER_REPORT_MS } from './messages.js';
import { createPrimaryForwarder } from './primary-forwarder.js';

/**
 * A data-plane worker (ADR 0010): one of OMFLOW_BOOSTER_WORKERS processes that share the
 * booster's listening socket and proxy requests. The primary process owns leadership, the
 * lease, health checks, step dispatch and /_booster/; it pushes its server table, role, epoch
 * and license gate here on every change and every 100 ms, and a worker routes only on what
 * it was last told. A worker reports its in-flight counts, request statistics and passive
 * failures back; ejection is decided by the primary alone, so every worker ejects the same
 * server at the same time.
 */

/**
 * Limits that bound the whole booster are split between the workers, so N workers together
 * open no more connections and queue no more requests than one process did.
 */
export function perWorkerConfig(cfg: BoosterConfig, workers: number): BoosterConfig {
  const share = (n: number) => Math.max(1, Math.ceil(n / workers));
  return {
    ...cfg,
    maxInflightPerServer: share(cfg.maxInflightPerServer),
    connectionsPerServer: share(cfg.connectionsPerServer),
    queueSize: cfg.queueSize === 0 ? 0 : share(cfg.queueSize),
  };
}

export interface RunningWorker {
  onMessage(m: ToWorker): void;
  /** Resolves once a graceful stop finished (listener closed, in-flight requests done, pools closed). */
  readonly stopped: Promise<void>;
}

/** Starts the data plane of one worker from the primary's init message. */
export function startDataPlaneWorker(init: Extract<ToWorker, { type: 'init' }>, send: (m: FromWorker) => void, log: Logger): RunningWorker {
  const cfg = perWorkerConfig(init.config.booster, init.workers);
  const clock = () => performance.now();
  let state = init.state;
  let stopping = false;
  const table = new MirroredServerTable(cfg, clock, (id, failure, weight) => send({ type: 'passive', id, failure, weight }));
  table.mirror(state.table);
  const pools = new UpstreamPools(cfg);
  const metrics = createMetrics();
  const pressure = new DbPressurePolicy(cfg, () => table.routable, clock);
  const forwarder = createPrimaryForwarder(init.controlUrl, log);
  const plane = createDataPlane({
    cfg,
    table,
    pools,
    metrics,
    log,
    pressure,
    epoch: () => state.epoch,
    gate: {
      serves: () => state.serves,
      activeUrl: () => state.activeUrl,
      stopping: () => state.stopping,
      allowsDistribution: () => state.allowsDistribution,
    },
    control: forwarder.handle,
  });

  let resolveStopped: () => void = () => {};
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  const sent = new Map<string, StatsDelta>();
  const sentRetries = new Map<string, number>();
  let sentShed = 0;
  async function report(): Promise<void> {
    const inflight: [string, number][] = table.list.map((e) => [e.id, e.inflight]);
    const limits: [string, number][] = table.list.map((e) => [e.id, table.concurrencyLimitOf(e)]);
    const stats: [string, StatsDelta][] = [];
    for (const [id, s] of metrics.stats) {
      const since = sent.get(id) ?? { counts: [0, 0, 0, 0, 0], buckets: s.buckets.map(() => 0), sum: 0, observed: 0 };
      const d = s.deltaSince(since);
      if (d) {
        stats.push([id, d]);
        sent.set(id, s.copy());
      }
    }
    const retries: [string, number][] = [];
    for (const v of (await metrics.retries.get()).values) {
      const reason = String(v.labels.reason);
      const growth = v.value - (sentRetries.get(reason) ?? 0);
      if (growth > 0) {
        retries.push([reason, growth]);
        sentRetries.set(reason, v.value);
      }
    }
    const shed = pressure.shed - sentShed;
    sentShed = pressure.shed;
    send({ type: 'report', inflight, limits, stats, retries, shed, admitShare: pressure.share });
  }
  const timers = [
    setInterval(() => void report(), WORKER_REPORT_MS),
    // Fail-safe: without a push for HEARTBEAT_TIMEOUT_MS (primary hung) the mirrored servers go down.
    setInterval(() => table.evaluate(), 500),
  ];

  plane.listen(init.port).then(
    (port) => send({ type: 'listening', port }),
    (err: Error & { code?: string }) => {
      send({ type: 'failed', code: err.code ?? 'ERR', message: err.message });
      for (const t of timers) clearInterval(t);
      resolveStopped();
    },
  );

  async function stop(): Promise<void> {
    await plane.close();
    await report().catch(() => {});
    for (const t of timers) clearInterval(t);
    await pools.close();
    forwarder.close();
    send({ type: 'stopped' });
    resolveStopped();
  }

  return {
    stopped,
    onMessage(m) {
      if (m.type === 'state') {
        state = m.state;
        table.mirror(state.table);
        if (m.ack) send({ type: 'ack', seq: state.seq });
      } else if (m.type === 'report') {
        void report();
      } else if (m.type === 'stop' && !stopping) {
        stopping = true;
        stop().catch((err) => log.error({ err }, 'data-plane worker stop failed'));
      }
    },
  };
}
