import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, hostname } from 'node:os';
import type { boosterArea } from '../common/config/areas/booster.js';
import type { clusterArea } from '../common/config/areas/cluster.js';
import type { AreaValues } from '../common/config/define.js';
import { createDatabase, type Database, type DatabaseConfig } from '../common/db/create-database.js';
import { createLogger, type Logger } from '../common/log.js';
import { ClusterStore } from './control-plane/cluster-store.js';
import { createControlPlane } from './control-plane/control-api.js';
import { HealthChecker } from './control-plane/health-checker.js';
import { ServerSync } from './control-plane/server-sync.js';
import { createStatusView } from './control-plane/status-view.js';
import { Admission, DbPressurePolicy } from './data-plane/admission.js';
import { createFrontHandler, createFrontServer } from './data-plane/front-router.js';
import { loadCertificate } from './data-plane/listener.js';
import { ReverseProxy } from './data-plane/reverse-proxy.js';
import { UpstreamPools } from './data-plane/upstream-pools.js';
import { QueryOutcomeAvailability } from './leadership/db-reachability.js';
import { LeaderLease } from './leadership/leader-lease.js';
import { Leadership } from './leadership/leadership.js';
import { createPeerProbe } from './leadership/peer-probe.js';
import { createVipOwner } from './leadership/vip-owner.js';
import { createLicenseGate, type LicenseGate } from './license/gate.js';
import { createMetrics } from './metrics.js';
import { ServerTable, type Transition } from './server-table/server-table.js';
import { StepDispatcher } from './steps/step-dispatcher.js';
import { DataPlaneWorkers } from './workers/worker-pool.js';

export type BoosterConfig = AreaValues<(typeof boosterArea)['keys']>;
export type ClusterConfig = AreaValues<(typeof clusterArea)['keys']>;

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
  /** The client-facing server; with data-plane workers, the leader's loopback /_booster/ listener. */
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
 * The composition root of the booster: db → stores → table, pools, admission → proxy, health,
 * leadership, dispatcher → http server. Wiring only; each part holds its own logic.
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
  let selfUrl = cfg.advertiseUrl ?? '';
  let stopping = false;

  // "Database reachable?" from the lease loop's and the dispatcher's own queries (db-reachability.ts).
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
  const isActive = () => leadership.role === 'active';
  /** Leader-only writes (events, drains, dispatch) need a confirmed lease, not just the active role. */
  const holdsLease = () => leadership.holdsLease();
  const recordEvent = (kind: string, subject: string | null, details?: unknown) =>
    store
      .recordEvent({ boosterId: nodeId, epoch: leadership.epoch, kind, subject, details })
      .catch((err) => log.warn({ err, kind }, 'could not record booster event'));
  const registerNode = (started: boolean, role: string = leadership.role) =>
    store.upsertNode({ id: nodeId, url: selfUrl, role, epoch: leadership.epoch, pid: process.pid, version, started });

  const onTransition = (t: Transition) => {
    log.info({ server: t.server.id, from: t.from, to: t.to, reason: t.reason }, 'server state changed');
    workers?.push();
    // Only the active writes server transitions, so the log holds each one once.
    if (!holdsLease() || stopping) return;
    const kind =
      t.to === 'up'
        ? t.from === 'draining'
          ? 'server-undrained'
          : 'server-up'
        : t.to === 'down'
          ? 'server-down'
          : t.to === 'ejected'
            ? 'server-ejected'
            : 'server-drained';
    void recordEvent(kind, t.server.id, { from: t.from, reason: t.reason });
  };

  /** Data-plane processes: 0 means one per core, at most 8. */
  const workerCount = cfg.workers === 0 ? Math.min(availableParallelism(), 8) : cfg.workers;
  let workers: DataPlaneWorkers | null = null;
  const table = new ServerTable(cfg, clock, onTransition);
  const pools = new UpstreamPools(cfg);
  const admission = new Admission(cfg, (n) => metrics.queued.set(n));
  const dbPressure = new DbPressurePolicy(cfg, () => table.routable, clock);
  // With workers the policy that sheds runs in each of them; status and metrics show theirs.
  const pressureView = {
    pressuredNow: () => dbPressure.pressuredNow(),
    get share() {
      return workers ? workers.pressure.admitShare : dbPressure.share;
    },
    get shed() {
      return workers ? workers.pressure.shed : dbPressure.shed;
    },
  };
  metrics.readAdmitShareFrom(() => pressureView.share);
  const proxy = new ReverseProxy({ table, admission, pools, metrics, log, epoch: () => leadership.currentEpoch(), opts: cfg });
  const health = new HealthChecker(table, pools, cfg, clock, log);
  const sync = new ServerSync(table, store, clock);
  const refreshServers = () => sync.refresh().catch((err) => log.warn({ err }, 'could not refresh servers'));
  const vip = cfg.vip && cfg.vipInterface ? createVipOwner({ address: cfg.vip, iface: cfg.vipInterface, arpCount: cfg.vipArpCount, log }) : null;
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
    onReassigned: (stepId, previous, to) => void recordEvent('step-reassigned', String(stepId), { from: previous, to }),
    onStaleEpoch: () => void leadership.tick(),
  });

  leadership.onTransition(async (t) => {
    if (t.kind === 'became-active') {
      metrics.takeovers.inc();
      metrics.epoch.set(t.epoch);
      metrics.active.set(1);
      metrics.leaseHeld.set(1);
      void vip?.claim(t.epoch); // only now that the lease with this epoch is held
      void recordEvent('takeover', nodeId, { epoch: t.epoch });
      void registerNode(false).catch(() => {});
      // Fresh drain flags and weights before the first dispatch round.
      await refreshServers();
      dispatcher.start();
    } else if (t.kind === 'lease-unsure') {
      metrics.leaseHeld.set(0);
    } else if (t.kind === 'lease-regained') {
      metrics.leaseHeld.set(1);
      metrics.epoch.set(t.epoch);
      if (t.epoch !== t.previousEpoch) void recordEvent('lease-reacquired', nodeId, { epoch: t.epoch, previousEpoch: t.previousEpoch });
      void registerNode(false).catch(() => {});
      await refreshServers();
      dispatcher.poke();
    } else {
      metrics.active.set(0);
      metrics.leaseHeld.set(0);
      void vip?.release(); // before the lease can lapse: step-down comes RENEW_DEADLINE_MS after the last good renewal
      metrics.epoch.set(0);
      void dispatcher.stop();
      void recordEvent('step-down', nodeId, { epoch: t.epoch, reason: t.reason });
      void registerNode(false).catch(() => {});
    }
  });

  const view = createStatusView({
    nodeId,
    version,
    peerUrl: cfg.peerUrl ?? null,
    startedAt,
    selfUrl: () => selfUrl,
    clock,
    table,
    leadership,
    gate,
    store,
    log,
    dbPressure: pressureView,
  });

  // ---- http ----
  const control = createControlPlane({
    secret,
    nodeId,
    bodyLimit: cfg.controlBodyLimit,
    log,
    operatorToken: cfg.operatorToken,
    tokenNeedsTls: !!(cfg.tlsCertFile && cfg.tlsKeyFile),
    selfUrls: () => [selfUrl],
    role: () => leadership.role,
    epoch: () => leadership.currentEpoch(),
    activeUrl: () => leadership.activeUrl,
    status: view.status,
    async metrics() {
      await workers?.collect();
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
      if (e && isActive() && table.stepRoom(e) > 0) dispatcher.poke();
      // The server's reported load (and any state it changed) reaches every worker before the reply.
      await workers?.synced(200);
    },
    agentReport: (r) => sync.agentReport(r),
    async drain(id, draining, reason) {
      const known = await sync.drain(id, draining, reason);
      // With workers: answer only once every worker routes on the new state.
      if (known) await workers?.synced();
      return known;
    },
    leaseNotHeld: () => isActive() && !holdsLease(),
    agentUrls: () => table.list.map((e) => e.agentUrl).filter((u): u is string => !!u),
    async licenseChanged() {
      await gate.refresh();
      await workers?.synced();
    },
    stepsReady: () => {
      if (isActive()) dispatcher.poke();
    },
  });

  const serves = () => isActive() || cfg.standbyServes;
  const front = createFrontHandler(
    { serves, activeUrl: () => leadership.activeUrl, stopping: () => stopping, allowsDistribution: () => gate.allowsDistribution() },
    control,
    proxy,
    { policy: dbPressure, onShed: () => metrics.dbPressureShed.inc() },
    log,
  );
  // With workers the leader serves only /_booster/, forwarded by the workers to this loopback listener.
  const server = workerCount > 1 ? createServer({ keepAliveTimeout: 5000 }, control) : createFrontServer(cfg, log, front.onRequest, front.onUpgrade);
  if (workerCount > 1) {
    // The front doors live in the workers: a certificate they cannot use fails here, before any fork.
    if (cfg.tlsCertFile && cfg.tlsKeyFile) loadCertificate({ certFile: cfg.tlsCertFile, keyFile: cfg.tlsKeyFile });
    workers = new DataPlaneWorkers({
      count: workerCount,
      config: { cluster: deps.config.cluster, booster: cfg },
      log,
      table,
      metrics,
      controlUrl: () => `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      state: () => ({
        serves: serves(),
        activeUrl: leadership.activeUrl,
        stopping,
        allowsDistribution: gate.allowsDistribution(),
        epoch: leadership.currentEpoch(),
        table: table.snapshot(),
      }),
    });
    leadership.onTransition(() => workers?.push());
  }

  const timers: NodeJS.Timeout[] = [];
  let listening = false;
  let closing: Promise<void> | null = null;

  async function listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (workers) server.listen(0, '127.0.0.1', () => resolve());
      else server.listen(cfg.port, cfg.host, () => resolve());
    });
    listening = true;
    await gate.start();
    table.setMaxServers(gate.maxServers());
    const port = workers ? await workers.start() : (server.address() as AddressInfo).port;
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
      setInterval(() => admission.refillFloor(), 1000),
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
    // Workers close their listeners and finish their requests while the lease is handed over.
    const workersStopped = listening ? workers?.stop(35_000) : undefined;
    const closed = listening && !workers ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    if (!workers) server.closeIdleConnections();
    await dispatcher.stop();
    if (leadership.role === 'active') await vip?.release(); // the address goes before the lease does
    const released = await leadership.resign();
    workers?.push();
    if (released !== null) await recordEvent('release', nodeId, { epoch: released });
    // In-flight requests finish; idle keep-alive connections are closed as they go idle.
    const drainTimer = workers ? undefined : setInterval(() => server.closeIdleConnections(), 50);
    let giveUp: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([closed, proxy.whenIdle(), workersStopped]), new Promise((r) => (giveUp = setTimeout(r, 30_000)))]);
    clearTimeout(giveUp);
    clearInterval(drainTimer);
    if (workers && listening) {
      const controlClosed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await controlClosed;
    }
    server.closeAllConnections();
    admission.close();
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
