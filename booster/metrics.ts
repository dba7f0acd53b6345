import { Counter, collectDefaultMetrics, Gauge, type Histogram, Registry } from 'prom-client';

/** Prometheus metrics of one booster (own registry: several boosters may share a process in tests). */
export function createMetrics(opts: { defaults?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaults) collectDefaultMetrics({ register: registry, prefix: 'omflow_booster_' });
  // The hot path counts in plain numbers (RequestStats); prom-client sees them only at scrape time,
  // so a proxied request costs no label hashing or closure allocation.
  const stats = new Map<string, RequestStats>();
  const statsOf = (server: string): RequestStats => {
    let s = stats.get(server);
    if (!s) stats.set(server, (s = new RequestStats()));
    return s;
  };
  const requests = new Counter({
    name: 'omflow_booster_requests_total',
    help: 'Proxied requests by server and status class',
    labelNames: ['server', 'class'] as const,
    registers: [registry],
    collect() {
      for (const [server, s] of stats) {
        for (let i = 0; i < CLASSES.length; i++) {
          this.labels(server, CLASSES[i]).inc(s.counts[i] - s.exported[i]);
          s.exported[i] = s.counts[i];
        }
      }
    },
  });
  const latency = new PlainHistogram('omflow_booster_request_duration_seconds', 'Time to response headers per server', stats);
  registry.registerMetric(latency as unknown as Histogram);
  const inflight = new Gauge({
    name: 'omflow_booster_inflight',
    help: 'Requests in flight per server',
    labelNames: ['server'] as const,
    registers: [registry],
  });
  const concurrencyLimit = new Gauge({
    name: 'omflow_booster_concurrency_limit',
    help: "Requests that may wait for a server's response headers at once (adaptive limit; with workers their sum)",
    labelNames: ['server'] as const,
    registers: [registry],
  });
  const retries = new Counter({
    name: 'omflow_booster_retries_total',
    help: 'Requests retried on another server',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const ejections = new Counter({ name: 'omflow_booster_ejections_total', help: 'Passive ejections', labelNames: ['server'] as const, registers: [registry] });
  const takeovers = new Counter({ name: 'omflow_booster_takeovers_total', help: 'Leader lease acquisitions by this booster', registers: [registry] });
  const epoch = new Gauge({ name: 'omflow_booster_epoch', help: 'Epoch of the leader lease held (0: standby)', registers: [registry] });
  const active = new Gauge({ name: 'omflow_booster_active', help: '1 while this booster is the active', registers: [registry] });
  const stepsDispatched = new Counter({ name: 'omflow_booster_steps_dispatched_total', help: 'Steps handed to a server', registers: [registry] });
  const stepsReassigned = new Counter({
    name: 'omflow_booster_steps_reassigned_total',
    help: 'Steps handed out again after their lease lapsed',
    registers: [registry],
  });
  const leaseHeld = new Gauge({
    name: 'omflow_booster_lease_held',
    help: '1 while this booster is active with a confirmed lease (0: standby, or riding through a database outage)',
    registers: [registry],
  });
  const dbReachable = new Gauge({ name: 'omflow_booster_db_reachable', help: '1 while the database answers this booster', registers: [registry] });
  const dbOutages = new Counter({ name: 'omflow_booster_db_outages_total', help: 'Times the database stopped answering this booster', registers: [registry] });
  const queued = new Gauge({ name: 'omflow_booster_queue_length', help: 'Requests waiting for a server slot', registers: [registry] });
  const dbPressureShed = new Counter({
    name: 'omflow_booster_db_pressure_shed_total',
    help: 'New requests answered 503 BOOSTER_ERR_DB_PRESSURE (admission under database pressure)',
    registers: [registry],
  });
  const workerExits = new Counter({
    name: 'omflow_booster_worker_exits_total',
    help: 'Data-plane workers that exited while the booster was running (each is forked again)',
    registers: [registry],
  });
  let admitShare = () => 1;
  new Gauge({
    name: 'omflow_booster_db_pressure_admit_share',
    help: 'Share of new non-keyed requests admitted (1: no shedding)',
    registers: [registry],
    collect() {
      this.set(admitShare());
    },
  });
  /** The admitted share is read at scrape time from the pressure policy. */
  const readAdmitShareFrom = (fn: () => number) => {
    admitShare = fn;
  };
  return {
    registry,
    requests,
    latency,
    statsOf,
    /** Every server's plain counters (a data-plane worker sends their growth to the primary). */
    stats: stats as ReadonlyMap<string, RequestStats>,
    inflight,
    concurrencyLimit,
    retries,
    ejections,
    takeovers,
    epoch,
    active,
    stepsDispatched,
    stepsReassigned,
    queued,
    dbPressureShed,
    readAdmitShareFrom,
    leaseHeld,
    dbReachable,
    dbOutages,
    workerExits,
  };
}

export type BoosterMetrics = ReturnType<typeof createMetrics>;

/** Status classes of omflow_booster_requests_total, indexed by RequestStats.count(). */
export const CLASSES = ['2xx', '3xx', '4xx', '5xx', 'error'] as const;
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Plain counters of RequestStats as they travel from a data-plane worker to the primary. */
export interface StatsDelta {
  counts: number[];
  buckets: number[];
  sum: number;
  observed: number;
}

/** Per-server request counts and time-to-headers histogram, in plain numbers. */
export class RequestStats {
  readonly counts = [0, 0, 0, 0, 0];
  readonly exported = [0, 0, 0, 0, 0];
  readonly buckets = new Array<number>(BUCKETS.length).fill(0);
  sum = 0;
  observed = 0;

  /** status null: no response (error). */
  count(status: number | null): void {
    this.counts[status === null ? 4 : status >= 500 ? 3 : status >= 400 ? 2 : status >= 300 ? 1 : 0]++;
  }

  /** Adds a worker's growth since its last report (the primary of data-plane workers). */
  add(d: StatsDelta): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += d.counts[i] ?? 0;
    for (let i = 0; i < this.buckets.length; i++) this.buckets[i] += d.buckets[i] ?? 0;
    this.sum += d.sum;
    this.observed += d.observed;
  }

  /** Growth since `since` (a copy taken at the last report), or null when nothing changed. */
  deltaSince(since: StatsDelta): StatsDelta | null {
    if (this.observed === since.observed && this.counts.every((c, i) => c === since.counts[i])) return null;
    return {
      counts: this.counts.map((c, i) => c - since.counts[i]),
      buckets: this.buckets.map((b, i) => b - since.buckets[i]),
      sum: this.sum - since.sum,
      observed: this.observed - since.observed,
    };
  }

  copy(): StatsDelta {
    return { counts: [...this.counts], buckets: [...this.buckets], sum: this.sum, observed: this.observed };
  }

  observe(seconds: number): void {
    this.sum += seconds;
    this.observed++;
    for (let i = 0; i < BUCKETS.length; i++) {
      if (seconds <= BUCKETS[i]) {
        this.buckets[i]++;
        return;
      }
    }
  }
}

/** A Prometheus histogram read from RequestStats at scrape time (same exposition as prom-client's). */
class PlainHistogram {
  readonly type = 'histogram';
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly stats: Map<string, RequestStats>,
  ) {}

  async get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    for (const [server, s] of this.stats) {
      let acc = 0;
      for (let i = 0; i < BUCKETS.length; i++) {
        acc += s.buckets[i];
        values.push({ labels: { le: BUCKETS[i], server }, value: acc, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { le: '+Inf', server }, value: s.observed, metricName: `${this.name}_bucket` });
      values.push({ labels: { server }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { server }, value: s.observed, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' };
  }

  reset(): void {}
}
