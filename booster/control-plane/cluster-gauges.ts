import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../../common/log.js';
import type { LicenseGate } from '../license/gate.js';
import type { ServerState, ServerTable } from '../server-table/server-table.js';

/**
 * The gauges an operator alerts on, read at scrape time from the booster's parts (nothing on the
 * request path): each server's state, the license's and the certificate's time left — the two
 * outages the product can cause itself —, the peer, the rollout. Registered on the booster's
 * registry next to the request metrics of metrics.ts.
 */
export interface ClusterGaugeDeps {
  registry: Registry;
  table: ServerTable;
  gate: LicenseGate;
  log: Logger;
  /** End of validity of the certificate being served (ms since the epoch; null: not known yet). Omitted without TLS. */
  certificateValidTo?: () => number | null;
  /** Whether the other booster of the pair answers. Omitted when none is configured. */
  peerReachable?: () => boolean;
  /** The newest rollout (from the database), null when there was none. */
  rollout: () => Promise<RolloutView | null>;
}

/** What the gauges read of the newest rollout (ClusterStore.latestRollout). */
export interface RolloutView {
  version: string;
  state: string;
  nodes: { state: string }[];
}

const SERVER_STATES: readonly ServerState[] = ['up', 'down', 'draining', 'ejected'];
const LICENSE_STATES = ['trial', 'licensed', 'grace', 'expired'] as const;
const ROLLOUT_STATES = ['active', 'halted', 'rolling_back', 'rolled_back', 'superseded'] as const;
/** The rollout is read from the database at most this often, however often Prometheus scrapes. */
const ROLLOUT_READ_MS = 5000;

export function registerClusterGauges(d: ClusterGaugeDeps): void {
  const registers = [d.registry];
  new Gauge({
    name: 'omflow_booster_server_state',
    help: 'Each server known to this booster: 1 for its current state (up, down, draining, ejected), 0 for the others',
    labelNames: ['server', 'state'] as const,
    registers,
    collect() {
      this.reset();
      for (const e of d.table.list) {
        const now = d.table.stateOf(e);
        for (const s of SERVER_STATES) this.labels(e.id, s).set(s === now ? 1 : 0);
      }
    },
  });

  const used = () => d.table.list.filter((e) => d.table.stateOf(e) !== 'down').length;
  new Gauge({
    name: 'omflow_license_state',
    help: 'The license state the booster applies: 1 for the current one (trial, licensed, grace, expired)',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const s = d.gate.status(used()).state;
      for (const state of LICENSE_STATES) this.labels(state).set(state === s ? 1 : 0);
    },
  });
  new Gauge({
    name: 'omflow_license_expiry_seconds',
    help: 'Seconds until the current license state ends: the trial, the license, or its grace period (+Inf: a license that never expires; 0: expired)',
    registers,
    collect() {
      const s = d.gate.status(used());
      if (s.state === 'expired') return this.set(0);
      // Not known until the gate read the database: NaN, which no alert threshold matches.
      if (s.periodEndsAt === undefined) return this.set(Number.NaN);
      this.set(s.periodEndsAt === null ? Number.POSITIVE_INFINITY : Math.max(0, (Date.parse(s.periodEndsAt) - Date.now()) / 1000));
    },
  });
  new Gauge({
    name: 'omflow_license_gate_open',
    help: '1 while the license lets the booster distribute requests and steps; 0: users get 503 BOOSTER_ERR_LICENSE_REQUIRED',
    registers,
    collect() {
      this.set(d.gate.allowsDistribution() ? 1 : 0);
    },
  });
  const certificateValidTo = d.certificateValidTo;
  if (certificateValidTo)
    new Gauge({
      name: 'omflow_booster_tls_certificate_expiry_seconds',
      help: 'Seconds until the certificate the booster port serves expires (negative once expired; absent without TLS; NaN until the data-plane workers reported it)',
      registers,
      collect() {
        const to = certificateValidTo();
        this.set(to === null ? Number.NaN : (to - Date.now()) / 1000);
      },
    });
  const peerReachable = d.peerReachable;
  if (peerReachable)
    new Gauge({
      name: 'omflow_booster_peer_reachable',
      help: 'Whether the other booster of the pair answers /_booster/active (absent when no peer is configured)',
      registers,
      collect() {
        this.set(peerReachable() ? 1 : 0);
      },
    });

  // A scrape never waits on the database (an outage must not stall /_booster/metrics, nor hold a
  // pool connection the lease needs): it shows the last rollout read and starts the next read,
  // at most one at a time and one per ROLLOUT_READ_MS.
  let rollout: RolloutView | null = null;
  let readAt = Number.NEGATIVE_INFINITY;
  let reading = false;
  const refreshRollout = () => {
    if (reading || performance.now() - readAt < ROLLOUT_READ_MS) return;
    reading = true;
    readAt = performance.now();
    d.rollout()
      .then((r) => {
        rollout = r;
      })
      .catch((err) => d.log.debug({ err }, 'rollout state not read for the metrics; showing the last one read'))
      .finally(() => {
        reading = false;
      });
  };
  refreshRollout();
  new Gauge({
    name: 'omflow_rollout_state',
    help: 'The newest patch rollout: 1 for its state (active, halted, rolling_back, rolled_back, superseded), labelled with its version; nothing before the first rollout',
    labelNames: ['version', 'state'] as const,
    registers,
    collect() {
      refreshRollout();
      this.reset();
      const r = rollout;
      if (r) for (const s of ROLLOUT_STATES) this.labels(r.version, s).set(s === r.state ? 1 : 0);
    },
  });
  new Gauge({
    name: 'omflow_rollout_nodes',
    help: 'Nodes of the newest patch rollout by their state (pending, installing, soaking, done, failed, reverted, refused, …)',
    labelNames: ['state'] as const,
    registers,
    collect() {
      this.reset();
      for (const n of rollout?.nodes ?? []) this.labels(n.state).inc();
    },
  });
}
