import { Agent, type IncomingMessage, type OutgoingHttpHeaders, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import type { boosterArea } from '../../common/config/areas/booster.js';
import type { clusterArea } from '../../common/config/areas/cluster.js';
import type { AreaValues } from '../../common/config/define.js';
import type { Logger } from '../../common/log.js';
import { Admission, DbPressurePolicy } from '../data-plane/admission.js';
import { createFrontHandler, createFrontServer, type FrontGate } from '../data-plane/front-router.js';
import { ReverseProxy } from '../data-plane/reverse-proxy.js';
import { UpstreamPools } from '../data-plane/upstream-pools.js';
import { BoosterErrors } from '../errors.js';
import { createMetrics, type StatsDelta } from '../metrics.js';
import { sendError } from '../replies.js';
import { type ServerEntry, ServerTable, type ServerView, type TableMirror } from '../server-table/server-table.js';

/**
 * A data-plane worker (ADR 0010): one of OMFLOW_BOOSTER_WORKERS processes that share the
 * booster's listening socket and proxy requests. The leader process owns leadership, the
 * lease, health checks, step dispatch and /_booster/; it pushes its server table, role, epoch
 * and license gate here on every change and every 100 ms, and a worker routes only on what
 * it was last told. A worker reports its in-flight counts, request statistics and passive
 * failures back; ejection is decided by the leader alone, so every worker ejects the same
 * server at the same time.
 */
type BoosterConfig = AreaValues<(typeof boosterArea)['keys']>;
type ClusterConfig = AreaValues<(typeof clusterArea)['keys']>;

/** The leader's view as a worker needs it, pushed on every change. */
export interface WorkerState {
  seq: number;
  serves: boolean;
  activeUrl: string | null;
  stopping: boolean;
  allowsDistribution: boolean;
  epoch: number;
  table: TableMirror;
}

export type ToWorker =
  | {
      type: 'init';
      index: number;
      workers: number;
      /** The port to share (never 0: see DataPlaneWorkers.start). */
      port: number;
      config: { cluster: ClusterConfig; booster: BoosterConfig };
      /** The leader's loopback listener for /_booster/. */
      controlUrl: string;
      state: WorkerState;
    }
  | { type: 'state'; state: WorkerState; ack: boolean }
  /** Report now (a metrics scrape wants every worker's counts). */
  | { type: 'report' }
  | { type: 'stop' };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'listening'; port: number }
  /** The listener could not open (port taken, certificate unusable): the worker exits. */
  | { type: 'failed'; code: string; message: string }
  | { type: 'ack'; seq: number }
  | {
      type: 'report';
      inflight: [string, number][];
      /** Each server's adaptive concurrency limit in this worker (booster/concurrency-limit.ts). */
      limits: [string, number][];
      stats: [string, StatsDelta][];
      retries: [string, number][];
      /** Requests shed under database pressure since the last report, and the admitted share now (ADR 0011). */
      shed: number;
      admitShare: number;
    }
  | { type: 'passive'; id: string; failure: boolean; weight: number }
  | { type: 'stopped' };

/** How often a worker reports in-flight counts and statistics to the leader. */
export const WORKER_REPORT_MS = 100;

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

/**
 * The worker's copy of the table: states and routing inputs come from the leader (mirror());
 * passive outcomes go to the leader instead of ejecting locally. A success is reported only
 * after a failure this worker reported, so the common path sends nothing.
 */
export class MirroredServerTable extends ServerTable {
  constructor(
    opts: ConstructorParameters<typeof ServerTable>[0],
    clock: () => number,
    private readonly report: (id: string, failure: boolean, weight: number) => void,
  ) {
    super(opts, clock, () => {});
  }

  override recordFailure(v: ServerView, weight: number): boolean {
    (v as ServerEntry).errorStreak += weight;
    this.report(v.id, true, weight);
    return false;
  }

  override recordSuccess(v: ServerView): void {
    if (v.errorStreak === 0) return;
    (v as ServerEntry).errorStreak = 0;
    this.report(v.id, false, 0);
  }
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'http2-settings']);

/**
 * The request head for the HTTP/1.1 hop to the primary: hop-by-hop headers dropped, and an
 * HTTP/2 request's pseudo-headers (`:method`, `:path`, `:scheme`, `:authority`) turned into what
 * HTTP/1.1 says instead (`:authority` is the Host); http.request throws on a name with a colon.
 */
export function forwardedHeaders(rawHeaders: readonly string[]): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  let authority: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    if (name.charCodeAt(0) === 58 /* ':' */) {
      if (name === ':authority') authority = rawHeaders[i + 1];
      continue;
    }
    if (HOP_BY_HOP.has(name)) continue;
    const prev = headers[name];
    // Repeated headers stay repeated (cookie crumbs of HTTP/2 are joined as RFC 9113 8.2.3 says).
    if (prev === undefined) headers[name] = rawHeaders[i + 1];
    else if (name === 'cookie') headers[name] = `${prev}; ${rawHeaders[i + 1]}`;
    else headers[name] = Array.isArray(prev) ? [...prev, rawHeaders[i + 1]] : [String(prev), rawHeaders[i + 1]];
  }
  if (headers.host === undefined && authority !== undefined) headers.host = authority;
  return headers;
}

/** /_booster/ at a worker: streamed to the primary's loopback listener, answer streamed back. */
function createLeaderForwarder(controlUrl: string, log: Logger): { handle(req: IncomingMessage, res: ServerResponse): void; close(): void } {
  const target = new URL(controlUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  return {
    handle(req, res) {
      const up = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: forwardedHeaders(req.rawHeaders), agent },
        (ur) => {
          const out: string[] = [];
          const raw = ur.rawHeaders;
          for (let i = 0; i < raw.length; i += 2) if (!HOP_BY_HOP.has(raw[i].toLowerCase())) out.push(raw[i], raw[i + 1]);
          try {
            res.writeHead(ur.statusCode ?? 502, out);
          } catch (err) {
            ur.destroy();
            log.error({ err, path: req.url }, 'could not relay the answer of the primary to a /_booster/ request');
            return sendError(res, BoosterErrors.BOOSTER_ERR_INTERNAL());
          }
          pipeline(ur, res, () => {});
        },
      );
      up.on('error', () => sendError(res, BoosterErrors.BOOSTER_ERR_LEADER_UNREACHABLE()));
      pipeline(req, up, () => {});
    },
    close: () => agent.destroy(),
  };
}

export interface RunningWorker {
  onMessage(m: ToWorker): void;
  /** Resolves once a graceful stop finished (listener closed, in-flight requests done, pools closed). */
  readonly stopped: Promise<void>;
}

/** Starts the data plane of one worker from the leader's init message. */
export function startDataPlaneWorker(init: Extract<ToWorker, { type: 'init' }>, send: (m: FromWorker) => void, log: Logger): RunningWorker {
  const cfg = perWorkerConfig(init.config.booster, init.workers);
  const clock = () => performance.now();
  let state = init.state;
  let stopping = false;
  const table = new MirroredServerTable(cfg, clock, (id, failure, weight) => send({ type: 'passive', id, failure, weight }));
  table.mirror(state.table);
  const pools = new UpstreamPools(cfg);
  const admission = new Admission(cfg, () => {});
  const dbPressure = new DbPressurePolicy(cfg, () => table.routable, clock);
  const metrics = createMetrics();
  const proxy = new ReverseProxy({ table, admission, pools, metrics, log, epoch: () => state.epoch, opts: cfg });
  const forwarder = createLeaderForwarder(init.controlUrl, log);
  const gate: FrontGate = {
    serves: () => state.serves,
    activeUrl: () => state.activeUrl,
    stopping: () => stopping || state.stopping,
    allowsDistribution: () => state.allowsDistribution,
  };
  const { onRequest, onUpgrade } = createFrontHandler(gate, forwarder.handle, proxy, { policy: dbPressure, onShed: () => metrics.dbPressureShed.inc() }, log);
  const server = createFrontServer(cfg, log, onRequest, onUpgrade);

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
    const shed = dbPressure.shed - sentShed;
    sentShed = dbPressure.shed;
    send({ type: 'report', inflight, limits, stats, retries, shed, admitShare: dbPressure.share });
  }
  const timers = [
    setInterval(() => void report(), WORKER_REPORT_MS),
    // Fail-safe: without a push for HEARTBEAT_TIMEOUT_MS (leader hung) the mirrored servers go down.
    setInterval(() => table.evaluate(), 500),
    setInterval(() => admission.refillFloor(), 1000),
  ];

  server.once('error', (err: Error & { code?: string }) => {
    if (server.listening) return;
    send({ type: 'failed', code: err.code ?? 'ERR', message: err.message });
    for (const t of timers) clearInterval(t);
    resolveStopped();
  });
  server.listen(init.port, cfg.host, () => send({ type: 'listening', port: (server.address() as AddressInfo).port }));

  async function stop(): Promise<void> {
    stopping = true;
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    const drainTimer = setInterval(() => server.closeIdleConnections(), 50);
    let giveUp: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([closed, proxy.whenIdle()]), new Promise((r) => (giveUp = setTimeout(r, 30_000)))]);
    clearTimeout(giveUp);
    clearInterval(drainTimer);
    server.closeAllConnections();
    await report().catch(() => {});
    for (const t of timers) clearInterval(t);
    admission.close();
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
        stop().catch((err) => log.error({ err }, 'data-plane worker stop failed'));
      }
    },
  };
}
