import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import type { AreaValues } from '../common/config/define.js';
import type { boosterArea } from '../common/config/areas/booster.js';
import type { clusterArea } from '../common/config/areas/cluster.js';
import { createDatabase, type Database, type DatabaseConfig } from '../common/db/create-database.js';
import { createLogger, type Logger } from '../common/log.js';
import { BOOSTER_PATH, HEADER, SERVER_PATH } from '../common/protocol/headers.js';
import type { AgentReport, Heartbeat } from '../common/protocol/messages.js';
import { createControlPlane } from './control-plane.js';
import { StepDispatcher } from './dispatcher.js';
import { BoosterErrors } from './errors.js';
import { HealthChecker } from './health-checker.js';
import { LeaderLease } from './leader.js';
import { createLicenseGate, isGateExempt, renderGatedResponse, type LicenseGate } from './license/gate.js';
import { createMetrics } from './metrics.js';
import { Proxy, sendError } from './proxy.js';
import { ServerTable, type Transition } from './server-table.js';
import { ClusterStore } from './stores.js';
import { createVipOwner } from './vip.js';

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
  readonly server: Server;
  readonly table: ServerTable;
  role(): 'active' | 'standby';
  epoch(): number;
  /** Base URL once listening. */
  url(): string;
  listen(): Promise<string>;
  /** Graceful: stop accepting, hand the lease over, finish in-flight requests. */
  close(): Promise<void>;
}

/** The composition root of the booster: db → stores → table → proxy, health, leader, dispatcher → http server. */
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

  let role: 'active' | 'standby' = 'standby';
  let epoch = 0;
  /** Newest leader epoch known from the lease row (what a standby reports and, when it serves, sends). */
  let leaderEpoch = 0;
  const currentEpoch = () => (role === 'active' ? epoch : Math.max(leaderEpoch, epoch));
  let activeUrl: string | null = null;
  let selfUrl = cfg.advertiseUrl ?? '';
  let peerAlive = false;
  let stopping = false;
  let lastRenewOk = 0;

  const recordEvent = (kind: string, subject: string | null, details?: unknown) =>
    store.recordEvent({ boosterId: nodeId, epoch, kind, subject, details }).catch((err) => log.warn({ err, kind }, 'could not record booster event'));

  const onTransition = (t: Transition) => {
    log.info({ server: t.server.id, from: t.from, to: t.to, reason: t.reason }, 'server state changed');
    // Only the active writes server transitions, so the log holds each one once.
    if (role !== 'active' || stopping) return;
    const kind = t.to === 'up' ? (t.from === 'draining' ? 'server-undrained' : 'server-up') : t.to === 'down' ? 'server-down' : t.to === 'ejected' ? 'server-ejected' : 'server-drained';
    void recordEvent(kind, t.server.id, { from: t.from, reason: t.reason });
  };

  const table = new ServerTable(cfg, clock, onTransition);
  const proxy = new Proxy(table, cfg, metrics, currentEpoch, log, (e) => log.warn({ server: e.id }, 'server ejected after failures'));
  const health = new HealthChecker(table, proxy, cfg, clock, log);
  let lease: LeaderLease | null = null;
  const pendingAgentStates = new Map<string, AgentReport>();
  const hbWritten = new Map<string, { at: number; key: string }>();
  const vip = cfg.vip && cfg.vipInterface ? createVipOwner({ address: cfg.vip, iface: cfg.vipInterface, arpCount: cfg.vipArpCount, log }) : null;

  const dispatcher = new StepDispatcher({
    knex: db.knex, table, proxy, metrics, log, nodeId, secret, opts: cfg, epoch: () => epoch,
    allowed: () => role === 'active' && gate.allowsDistribution(),
    onReassigned: (stepId, previous, to) => void recordEvent('step-reassigned', String(stepId), { from: previous, to }),
    onStaleEpoch: () => void electionTick(),
  });

  // ---- leadership ----
  async function becomeActive(newEpoch: number): Promise<void> {
    role = 'active';
    epoch = newEpoch;
    activeUrl = selfUrl;
    lastRenewOk = clock();
    metrics.takeovers.inc();
    metrics.epoch.set(epoch);
    metrics.active.set(1);
    log.info({ epoch }, 'this booster is now the active');
    void vip?.claim(newEpoch); // only now that the lease with this epoch is held
    void recordEvent('takeover', nodeId, { epoch });
    void store.upsertNode({ id: nodeId, url: selfUrl, role, epoch, pid: process.pid, version, started: false }).catch(() => {});
    await refreshServers();
    dispatcher.start();
  }

  function stepDown(reason: string): void {
    if (role !== 'active') return;
    const old = epoch;
    role = 'standby';
    metrics.active.set(0);
    metrics.epoch.set(0);
    log.warn({ epoch: old, reason }, 'stepping down to standby');
    void vip?.release(); // before the lease can lapse: step-down comes RENEW_DEADLINE_MS after the last good renewal
    void dispatcher.stop();
    void recordEvent('step-down', nodeId, { epoch: old, reason });
    void store.upsertNode({ id: nodeId, url: selfUrl, role, epoch: old, pid: process.pid, version, started: false }).catch(() => {});
  }

  let electionTimer: NodeJS.Timeout | null = null;
  let electionBusy = false;
  let standbyTicks = 0;
  async function electionTick(): Promise<void> {
    if (electionBusy || stopping || !lease) return;
    electionBusy = true;
    try {
      if (role === 'active') {
        const started = clock();
        const myEpoch = epoch;
        const ok = await lease.renew(myEpoch);
        if (role === 'active' && epoch === myEpoch) {
          if (ok) lastRenewOk = started;
          else stepDown('leader lease lost');
        }
      } else {
        const got = await lease.tryAcquire();
        if (got !== null && !stopping) await becomeActive(got);
        else if (standbyTicks++ % 4 === 0) {
          const info = await lease.read();
          activeUrl = info.live ? info.holderUrl : null;
          leaderEpoch = info.epoch;
        }
      }
    } catch (err) {
      log.warn({ err }, 'leader lease check failed');
    } finally {
      electionBusy = false;
    }
  }

  function scheduleElection(): void {
    if (stopping) return;
    const wait = role === 'active' ? cfg.renewMs : cfg.peerUrl && peerAlive ? cfg.standbyPollMs : cfg.fastPollMs;
    electionTimer = setTimeout(() => void electionTick().finally(scheduleElection), wait);
  }

  // Step down before the lease can lapse when renewals stall (database slow or unreachable).
  const watchdog = setInterval(() => {
    if (role === 'active' && clock() - lastRenewOk > cfg.renewDeadlineMs) stepDown('lease renewal deadline passed');
  }, 25);
  watchdog.unref();

  let probeTimer: NodeJS.Timeout | null = null;
  async function probePeer(): Promise<void> {
    if (!cfg.peerUrl || role === 'active') return;
    try {
      const r = await fetch(cfg.peerUrl + BOOSTER_PATH.active, { signal: AbortSignal.timeout(cfg.probeTimeoutMs) });
      await r.arrayBuffer();
      const was = peerAlive;
      peerAlive = true;
      if (!was) log.info({ peer: cfg.peerUrl }, 'peer booster answers');
    } catch {
      if (peerAlive) {
        log.warn({ peer: cfg.peerUrl }, 'peer booster does not answer; watching the lease closely');
        // Try the lease at once instead of waiting for the slow poll.
        if (electionTimer) clearTimeout(electionTimer);
        peerAlive = false;
        void electionTick().finally(() => {
          if (electionTimer) clearTimeout(electionTimer);
          scheduleElection();
        });
      }
      peerAlive = false;
    }
  }

  // ---- servers ----
  async function refreshServers(): Promise<void> {
    const rows = await store.loadServers();
    for (const r of rows) {
      const known = table.servers.get(r.id);
      table.upsert({ id: r.id, url: known?.heartbeat ? known.url : r.url, agentUrl: r.agentUrl, version: known?.heartbeat ? undefined : r.version, draining: r.draining, weight: r.weight, agentState: r.agentState });
    }
    table.evaluate();
  }

  async function heartbeat(hb: Heartbeat): Promise<void> {
    const { entry, accepted } = table.heartbeat(hb);
    if (!accepted) return;
    const pending = pendingAgentStates.get(hb.nodeId);
    const key = `${hb.url}|${hb.version}|${hb.agentUrl ?? ''}`;
    const last = hbWritten.get(hb.nodeId);
    const now = clock();
    if (!last || last.key !== key || now - last.at > 5000) {
      hbWritten.set(hb.nodeId, { at: now, key });
      await store.saveHeartbeat(hb);
      if (pending) {
        pendingAgentStates.delete(hb.nodeId);
        await store.setAgentState(pending.nodeId, pending.state, pending.agentUrl, pending.version);
      }
    }
    if (role === 'active' && table.stepRoom(entry) > 0) dispatcher.poke();
  }

  // status and events are unauthenticated reads on the public port: however often they are
  // asked, the shared database sees at most one query of each per second from this booster.
  const dbView = memoizeFor(1000, async () => {
    try {
      const [boosters, rollout] = await Promise.all([store.listNodes(), store.latestRollout()]);
      return { boosters: boosters as unknown[], rollout: rollout as unknown };
    } catch (err) {
      log.warn({ err }, 'could not read booster nodes or rollout');
      return { boosters: [] as unknown[], rollout: null as unknown };
    }
  });
  const recentEvents = new Map<number, () => Promise<unknown>>();

  async function status() {
    const now = clock();
    const used = table.list.filter((e) => table.stateOf(e, now) !== 'down').length;
    const { boosters, rollout } = await dbView();
    return {
      role, epoch: currentEpoch(), pid: process.pid, nodeId, url: selfUrl, version, peer: cfg.peerUrl ?? null, peerAlive: cfg.peerUrl ? peerAlive : null,
      activeUrl, uptimeMs: Date.now() - startedAt, licenseAllowsDistribution: gate.allowsDistribution(),
      servers: table.list.map((e) => ({
        id: e.id, url: e.url, state: table.stateOf(e, now), inflight: e.inflight, load: table.reportedLoad(e), version: e.version,
        agentUrl: e.agentUrl, agentState: e.agentState, draining: e.drainingDb || !!e.heartbeat?.draining, weight: e.weight,
        routed: e.licensed, reason: e.licensed ? null : 'beyond the licensed server count',
        lastHeartbeatMsAgo: e.heartbeatAt ? Math.round(now - e.heartbeatAt) : null,
        runningSteps: e.heartbeat?.runningSteps ?? null, stepCapacity: e.heartbeat?.stepCapacity ?? null,
      })),
      license: gate.status(used),
      boosters,
      rollout,
    };
  }

  // ---- http ----
  const control = createControlPlane({
    secret, nodeId, bodyLimit: cfg.controlBodyLimit, log,
    role: () => role, epoch: currentEpoch, activeUrl: () => activeUrl,
    status,
    async metrics() {
      for (const e of table.list) metrics.inflight.labels(e.id).set(e.inflight);
      return { contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
    },
    events: (limit) => {
      let read = recentEvents.get(limit);
      if (!read) recentEvents.set(limit, (read = memoizeFor(1000, () => store.recentEvents(limit))));
      return read() as ReturnType<typeof store.recentEvents>;
    },
    heartbeat,
    async agentReport(r) {
      const e = table.servers.get(r.nodeId);
      if (e) {
        e.agentState = r.state;
        e.agentUrl = r.agentUrl;
      }
      if (!(await store.setAgentState(r.nodeId, r.state, r.agentUrl, r.version))) pendingAgentStates.set(r.nodeId, r);
    },
    async drain(id, draining, reason) {
      const ok = await store.setDraining(id, draining, reason);
      if (!ok) return false;
      const e = table.servers.get(id);
      if (e) {
        e.drainingDb = draining;
        table.evaluate();
      }
      return true;
    },
    agentUrls: () => table.list.map((e) => e.agentUrl).filter((u): u is string => !!u),
    licenseChanged: () => gate.refresh(),
    stepsReady: () => {
      if (role === 'active') dispatcher.poke();
    },
  });

  const serves = () => role === 'active' || cfg.standbyServes;

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    if (url.startsWith(BOOSTER_PATH.prefix)) return control(req, res);
    if (stopping) res.setHeader('connection', 'close');
    if (!serves()) {
      return sendError(res, BoosterErrors.BOOSTER_ERR_STANDBY(), activeUrl ? { 'retry-after': '1', [HEADER.active]: activeUrl } : { 'retry-after': '1' });
    }
    if (url.startsWith(SERVER_PATH.internalPrefix)) return sendError(res, BoosterErrors.BOOSTER_ERR_INTERNAL_PATH());
    if (!gate.allowsDistribution() && !isGateExempt(url)) {
      const g = renderGatedResponse(req.headers.accept);
      res.writeHead(g.status, { ...g.headers, 'content-length': Buffer.byteLength(g.body) });
      return void res.end(g.body);
    }
    proxy.handle(req, res);
  }

  const server = createServer({ keepAliveTimeout: 5000, requestTimeout: 0, headersTimeout: 30_000 }, onRequest);
  server.timeout = cfg.idleTimeoutMs;
  server.on('upgrade', (req, socket, head) => {
    const url = req.url ?? '/';
    if (!serves() || url.startsWith(SERVER_PATH.internalPrefix) || url.startsWith(BOOSTER_PATH.prefix) || (!gate.allowsDistribution() && !isGateExempt(url))) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    proxy.upgrade(req, socket, head);
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
  });

  const timers: NodeJS.Timeout[] = [];
  let listening = false;

  return {
    nodeId,
    server,
    table,
    role: () => role,
    epoch: currentEpoch,
    url: () => selfUrl,
    async listen() {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(cfg.port, cfg.host, () => resolve());
      });
      listening = true;
      const port = (server.address() as AddressInfo).port;
      if (!selfUrl) selfUrl = `http://${cfg.host === '0.0.0.0' || cfg.host === '::' ? hostname() : cfg.host}:${port}`;
      lease = new LeaderLease(db.knex, nodeId, selfUrl, cfg.leaseMs);
      await gate.start();
      table.setMaxServers(gate.maxServers());
      await refreshServers().catch((err) => log.warn({ err }, 'could not load servers'));
      await store.upsertNode({ id: nodeId, url: selfUrl, role, epoch, pid: process.pid, version, started: true }).catch((err) => log.warn({ err }, 'could not register booster node'));
      health.start();
      timers.push(
        setInterval(() => {
          table.setMaxServers(gate.maxServers());
          table.evaluate();
        }, 100),
        setInterval(() => void refreshServers().catch((err) => log.warn({ err }, 'could not refresh servers')), 1000),
        setInterval(() => proxy.refillFloor(), 1000),
        setInterval(() => void store.upsertNode({ id: nodeId, url: selfUrl, role, epoch, pid: process.pid, version, started: false }).catch(() => {}), 5000),
      );
      if (cfg.peerUrl) timers.push(setInterval(() => void probePeer(), cfg.probeMs));
      for (const t of timers) t.unref();
      await vip?.removeStale();
      await electionTick();
      scheduleElection();
      log.info({ url: selfUrl, role, epoch }, 'booster listening');
      return selfUrl;
    },
    async close() {
      if (stopping) return;
      stopping = true;
      if (electionTimer) clearTimeout(electionTimer);
      clearInterval(watchdog);
      for (const t of timers) clearInterval(t);
      health.stop();
      const closed = listening ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
      server.closeIdleConnections();
      await dispatcher.stop();
      const wasActive = role === 'active';
      const myEpoch = epoch;
      role = 'standby';
      if (wasActive && vip) await vip.release(); // the address goes before the lease does
      if (wasActive && lease) {
        await lease.release(myEpoch).catch((err) => log.warn({ err }, 'could not release the leader lease; it lapses by itself'));
        await recordEvent('release', nodeId, { epoch: myEpoch });
      }
      // In-flight requests finish; idle keep-alive connections are closed as they go idle.
      const drainTimer = setInterval(() => server.closeIdleConnections(), 50);
      let giveUp: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all([closed, proxy.whenIdle()]), new Promise((r) => (giveUp = setTimeout(r, 30_000)))]);
      clearTimeout(giveUp);
      clearInterval(drainTimer);
      server.closeAllConnections();
      await proxy.close();
      await store.upsertNode({ id: nodeId, url: selfUrl, role: 'stopped', epoch: myEpoch, pid: process.pid, version, started: false }).catch(() => {});
      await gate.close();
      if (ownDb) await db.destroy();
      log.info('booster stopped');
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
