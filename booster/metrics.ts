import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one booster (own registry: several boosters may share a process in tests). */
export function createMetrics(opts: { defaults?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaults) collectDefaultMetrics({ register: registry, prefix: 'omflow_booster_' });
  const requests = new Counter({
    name: 'omflow_booster_requests_total', help: 'Proxied requests by server and status class',
    labelNames: ['server', 'class'] as const, registers: [registry],
  });
  const latency = new Histogram({
    name: 'omflow_booster_request_duration_seconds', help: 'Time to response headers per server',
    labelNames: ['server'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const inflight = new Gauge({ name: 'omflow_booster_inflight', help: 'Requests in flight per server', labelNames: ['server'] as const, registers: [registry] });
  const retries = new Counter({ name: 'omflow_booster_retries_total', help: 'Requests retried on another server', labelNames: ['reason'] as const, registers: [registry] });
  const ejections = new Counter({ name: 'omflow_booster_ejections_total', help: 'Passive ejections', labelNames: ['server'] as const, registers: [registry] });
  const takeovers = new Counter({ name: 'omflow_booster_takeovers_total', help: 'Leader lease acquisitions by this booster', registers: [registry] });
  const epoch = new Gauge({ name: 'omflow_booster_epoch', help: 'Epoch of the leader lease held (0: standby)', registers: [registry] });
  const active = new Gauge({ name: 'omflow_booster_active', help: '1 while this booster is the active', registers: [registry] });
  const stepsDispatched = new Counter({ name: 'omflow_booster_steps_dispatched_total', help: 'Steps handed to a server', registers: [registry] });
  const stepsReassigned = new Counter({ name: 'omflow_booster_steps_reassigned_total', help: 'Steps handed out again after their lease lapsed', registers: [registry] });
  const queued = new Gauge({ name: 'omflow_booster_queue_length', help: 'Requests waiting for a server slot', registers: [registry] });
  return { registry, requests, latency, inflight, retries, ejections, takeovers, epoch, active, stepsDispatched, stepsReassigned, queued };
}

export type BoosterMetrics = ReturnType<typeof createMetrics>;
