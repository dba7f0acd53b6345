import type { Knex } from 'knex';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { DatabaseAvailabilityView } from '../common/db/availability.js';
import { registerBuildInfo } from '../common/metrics/build-info.js';
import { poolStats } from './heartbeat.js';
import type { Runtime } from './runtime.js';

const CLASSES = ['2xx', '3xx', '4xx', '5xx'] as const;
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The app server's /_internal/metrics: requests by status class and their duration, what its
 * heartbeat reports (in flight, steps, event-loop lag, the database pool and reachability), and
 * the process.
 */
export function createServerMetrics(d: { node: string; version: string; runtime: Runtime; knex: Knex; availability?: DatabaseAvailabilityView }) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'omflow_server_' });
  registerBuildInfo(registry, { role: 'server', version: d.version, node: d.node });
  const registers = [registry];
  const requests = new Counter({
    name: 'omflow_server_requests_total',
    help: 'Requests answered by this app server, by status class',
    labelNames: ['class'] as const,
    registers,
  });
  // Bound once: a request adds to a child counter and a histogram, no label lookup.
  const byClass = CLASSES.map((c) => requests.labels(c));
  const duration = new Histogram({ name: 'omflow_server_request_duration_seconds', help: 'Time to answer a request', buckets: BUCKETS, registers });
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  gauge('omflow_server_inflight', 'Requests being handled', () => Math.max(0, d.runtime.inflight));
  gauge('omflow_server_steps_running', 'Automatic flow steps running', () => d.runtime.runningSteps);
  gauge('omflow_server_step_capacity', 'Automatic flow steps this server runs at once (OMFLOW_SERVER_STEP_CONCURRENCY)', () => d.runtime.stepCapacity);
  gauge('omflow_server_event_loop_lag_seconds', 'Mean event-loop delay beyond the sampling resolution', () => d.runtime.eventLoopLagMs() / 1000);
  gauge('omflow_server_db_pool_used', 'Database connections in use', () => poolStats(d.knex).used);
  gauge('omflow_server_db_pool_waiting', 'Requests waiting for a database connection', () => poolStats(d.knex).waiting);
  gauge('omflow_server_db_reachable', '1 while the database answers this server', () => (d.availability ? (d.availability.isUp() ? 1 : 0) : 1));
  gauge('omflow_server_draining', '1 while the server is draining (stopping or patched)', () => (d.runtime.draining ? 1 : 0));
  return {
    registry,
    /** One answered request: its status and time in seconds. */
    observe(status: number, seconds: number): void {
      byClass[status >= 500 ? 3 : status >= 400 ? 2 : status >= 300 ? 1 : 0].inc();
      duration.observe(seconds);
    },
  };
}
