import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, hostname } from 'node:os';
import { createDatabase, type Database, type DatabaseConfig } from '../common/db/create-database.js';
import { createLogger, type Logger } from '../common/log.js';
import type { BoosterConfig, ClusterConfig } from './config.js';
import { createClusterEvents } from './control-plane/cluster-events.js';
import { ClusterStore } from './control-plane/cluster-store.js';
import { createControlApi } from './control-plane/control-api.js';
import { createControlCore } from './control-plane/control-core.js';
import { HealthChecker } from './control-plane/health-checker.js';
import { ServerSync } from './control-plane/server-sync.js';
import { createDataPlane, DRAIN_MS } from './data-plane/data-plane.js';
import { DbPressurePolicy } from './data-plane/db-pressure.js';
import type { FrontGate } from './data-plane/front-router.js';
import { loadCertificate } from './data-plane/tls-certificate.js';
import { UpstreamPools } from './data-plane/upstream-pools.js';
import { createActiveDuties } from './leadership/active-duties.js';
import { QueryOutcomeAvailability } from './leadership/db-reachability.js';
import { LeaderLease } from './leadership/leader-lease.js';
import { Leadership } from './leadership/leadership.js';
import { createPeerProbe } from './leadership/peer-probe.js';
import { createVipOwner } from './leadership/vip-owner.js';
import { createLicenseGate, type LicenseGate } from './license/gate.js';
import { createMetrics } from './metrics.js';
import { snapshotOf } from './server-table/mirrored-table.js';
import { ServerTable } from './server-table/server-table.js';
import { StepDispatcher } from './steps/step-dispatcher.js';
import { WorkerPool } from './workers/worker-pool.js';

export interface BoosterDeps {
  config: { cluster: ClusterConfig; booster: BoosterConfig; database?: DatabaseConfig };
  /** Shared database; created from config.database (and closed on stop) when omitted. */
  db?: Database;
  log?: Logger;
  licenseGate?: LicenseGate;
  /** Monotonic clock in ms (tests may drive it). */
  now?: () => number;
  random?: () => number;
  version?: string;
}

export interface Booster {
  readonly nodeId: string;
  /** The client-facing server; with data-plane workers, the primary's loopback /_booster/ listener. */
  readonly server: Server;
  /** Data-plane processes: 1 is this process alone; more are workers sharing the port (ADR 0010). */
  readonly workers: number;
  readonly table: ServerTable;
  role(): 'active' | 'standby';
  epoch(): number;
  /** Base URL once listening. */
  url(): string;
  listen(): Promise<string>;
  /** Graceful: stop accepting, hand the lease over, finish in-flight requests. Every caller gets the same promise. */
  close(): Promise<void>;
}

/**
 * The composition root of the booster, wiring only: database → stores → table, pools →
 * leadership and its duties, health, server sync, step dispatch → the /_booster/ API → the data
 * plane, here or in N workers behind this primary (ADR 0010). Each part holds its own logic.
 */
export function createBooster(deps: BoosterDeps): Booster {
  const cfg = deps.config.booster;
  const { secret, nodeId } = deps.config.cluster;
  const log = deps.log ?? createLogger({ name: 'booster', level: deps.config.cluster.logLevel, nodeId });
  const ownDb = !deps.db;
  if (!deps.db && !deps.config.database) throw new Error('createBooster needs db or config.database');
  const db = deps.db ?? createDatabase(deps.config.database!);
  const clock = deps.now ?? (() => performance.now());
  const version = deps.version ?? null;
  const gate = deps.licenseGate ?? createLicenseGate({ db, log, nodeId });
  const metrics = createMetrics({ defaults: ownDb });
  const store = new ClusterStore(db.knex);
  const startedAt = Date.now();
  /** Data-plane processes: 0 means one per core, at most 8. */
  const workerCount = cfg.workers === 0 ? Math.min(availableParallelism(), 8) : cfg.workers;
  let selfUrl = cfg.advertiseUrl ?? '';
  let stopping = false;
  let workers: WorkerPool | null = null;

  // Leadership: the lease decides; "database reachable?" comes from its own queries.
  const dbSignal = new QueryOutcomeAvailability(clock, log, cfg.renewDeadlineMs);
  metrics.dbReachable.set(1);
  dbSignal.onChange((up) => {
    metrics.dbReachable.set(up ? 1 : 0);
    if (!up) metrics.dbOutages.inc();
  });
  const leadership = new Leadership({
    lease: new LeaderLease(db.knex, nodeId, () => selfUrl, cfg.leaseMs),
    opts: cfg,
    clock,
    log,
    nodeId,
    selfUrl: () => selfUrl,
    peerUrl: cfg.peerUrl ?? null,
    db: dbSignal,
    probePeer: cfg.peerUrl ? createPeerProbe({ peerUrl: cfg.peerUrl, timeoutMs: cfg.probeTimeoutMs, secret, nodeId }) : null,
  });
  /** Lease-needing writes (events, drains, dispatch) need a confirmed lease, not just the active role. */
  const holdsLease = () => leadership.holdsLease();
  const events = createClusterEvents({ store, nodeId, log, epoch: () => leadership.epoch });
  const registerNode = (started: boolean, role: string = leadership.role) =>
    store.upsertNode({ id: nodeId, url: selfUrl, role, epoch: leadership.epoch, pid: process.pid, version, started });

  // The server table and what feeds it.
  const table = new ServerTable(cfg, clock, (t) => {
    log.info({ server: t.server.id, from: t.from, to: t.to, reason: t.reason }, 'server state changed');
    workers?.push();
    // Only the active writes server transitions, so the log holds each one once.
    if (holdsLease() && !stopping) void events.serverTransition(t);
  });
  const pools = new UpstreamPools(cfg);
  const health = new HealthChecker(table, pools, cfg, clock, log);
  const sync = new ServerSync(table, store, clock);
  const refreshServers = () => sync.refresh().catch((err) => log.warn({ err }, 'could not refresh servers'));

  // What the active does, started and stopped by leadership transitions.
  const dispatcher = new StepDispatcher({
    knex: db.knex,
    table,
    pools,
    metrics,
    log,
    nodeId,
    secret,
    opts: cfg,
    epoch: () => leadership.epoch,
    allowed: () => holdsLease() && gate.allowsDistribution(),
    db: dbSignal,
    onReassigned: (stepId, previous, to) => void events.record('step-reassigned', String(stepId), { from: previous, to }),
    onStaleEpoch: () => void leadership.tick(),
  });
  const vip = cfg.vip && cfg.vipInterface ? createVipOwner({ address: cfg.vip, iface: cfg.vipInterface, arpCount: cfg.vipArpCount, log }) : null;
  leadership.onTransition(
    createActiveDuties({ metrics, vip, nodeId, record: events.record, registerNode: () => registerNode(false), refreshServers, steps: dispatcher }),
  );

  // The data plane: in this process, or in N workers with this primary serving /_booster/ on loopback (ADR 0010).
  const dbPressure = new DbPressurePolicy(cfg, () => table.routable, clock);
  const front: FrontGate = {
    serves: () => leadership.role === 'active' || cfg.standbyServes,
    activeUrl: () => leadership.activeUrl,
    stopping: () => stopping,
    allowsDistribution: () => gate.allowsDistribution(),
  };
  if (workerCount > 1) {
    // The listeners live in the workers: a certificate they cannot use fails here, before any fork.
    if (cfg.tlsCertFile && cfg.tlsKeyFile) loadCertificate({ certFile: cfg.tlsCertFile, keyFile: cfg.tlsKeyFile });
    workers = new WorkerPool({
      count: workerCount,
      config: { cluster: deps.config.cluster, booster: cfg },
      log,
      table,
      metrics,
      controlUrl: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      state: () => ({
        serves: front.serves(),
        activeUrl: front.activeUrl(),
        stopping,
        allowsDistribution: front.allowsDistribution(),
        epoch: leadership.currentEpoch(),
        table: snapshotOf(table, clock()),
      }),
    });
    leadership.onTransition(() => workers?.push());
  }
  // Each worker sheds on its own database-pressure policy: status and metrics show theirs.
  const pressure = {
    pressuredNow: () => dbPressure.pressuredNow(),
    get share() {
      return workers ? workers.pressure.admitShare : dbPressure.share;
    },
    get shed() {
      return workers ? workers.pressure.shed : dbPressure.shed;
    },
  };
  metrics.readAdmitShareFrom(() => pressure.share);

  const control = createControlApi(
    createControlCore({
      cfg,
      secret,
      nodeId,
      version,
      startedAt,
      clock,
      log,
      table,
      leadership,
      gate,
      store,
      sync,
      metrics,
      peerUrl: cfg.peerUrl ?? null,
      selfUrl: () => selfUrl,
      dbPressure: pressure,
      steps: dispatcher,
      workers: () => workers,
    }),
  );
  const plane = workers
    ? null
    : createDataPlane({ cfg, table, pools, metrics, log, pressure: dbPressure, epoch: () => leadership.currentEpoch(), gate: front, control });
  const server = plane?.server ?? createServer({ keepAliveTimeout: 5000 }, control);

  const timers: NodeJS.Timeout[] = [];
  let listening = false;
  let closing: Promise<void> | null = null;

  async function listen(): Promise<string> {
    let port = plane ? await plane.listen(cfg.port) : await listenOnLoopback(server);
    listening = true;
    await gate.start();
    table.setMaxServers(gate.maxServers());
    if (workers) port = await workers.start();
    if (!selfUrl) selfUrl = `http://${cfg.host === '0.0.0.0' || cfg.host === '::' ? hostname() : cfg.host}:${port}`;
    await refreshServers();
    await registerNode(true).catch((err) => log.warn({ err }, 'could not register booster node'));
    health.start();
    timers.push(
      setInterval(() => {
        table.setMaxServers(gate.maxServers());
        table.evaluate();
        workers?.push(); // load, gate and epoch reach the workers at least every 100 ms
      }, 100),
      setInterval(() => void refreshServers(), 1000),
      setInterval(() => void registerNode(false).catch(() => {}), 5000),
    );
    for (const t of timers) t.unref();
    await vip?.removeStale();
    await leadership.start();
    log.info({ url: selfUrl, role: leadership.role, epoch: leadership.epoch }, 'booster listening');
    return selfUrl;
  }

  async function shutdown(): Promise<void> {
    stopping = true;
    workers?.push();
    leadership.stop();
    for (const t of timers) clearInterval(t);
    health.stop();
    // The data plane stops accepting and finishes its requests while the lease is handed over.
    const drained = plane ? plane.close() : listening ? workers?.stop(DRAIN_MS + 5000) : undefined;
    await dispatcher.stop();
    if (leadership.role === 'active') await vip?.release(); // the address goes before the lease does
    const released = await leadership.resign();
    workers?.push();
    if (released !== null) await events.record('release', nodeId, { epoch: released });
    let giveUp: NodeJS.Timeout | undefined;
    await Promise.race([drained, new Promise((r) => (giveUp = setTimeout(r, DRAIN_MS)))]);
    clearTimeout(giveUp);
    if (!plane && listening) {
      const controlClosed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await controlClosed;
    }
    await pools.close();
    await registerNode(false, 'stopped').catch(() => {});
    await gate.close();
    if (ownDb) await db.destroy();
    log.info('booster stopped');
  }

  return {
    nodeId,
    server,
    workers: workerCount,
    table,
    role: () => leadership.role,
    epoch: () => leadership.currentEpoch(),
    url: () => selfUrl,
    listen,
    close: () => (closing ??= shutdown()),
  };
}

/** The primary's /_booster/ listener when the workers hold the booster port; resolves with its port. */
function listenOnLoopback(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}
