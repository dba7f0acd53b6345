import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/log.js';
import type { BoosterConfig } from '../config.js';
import type { BoosterMetrics } from '../metrics.js';
import type { ServerTable } from '../server-table/server-table.js';
import { AccessLog, accessLogSettingsOf } from './access-log.js';
import { Admission } from './admission.js';
import type { DbPressurePolicy } from './db-pressure.js';
import { createFrontRouter, type FrontGate, type FrontRouter, type Handler } from './front-router.js';
import { createListener, type Listener } from './listener.js';
import { ReverseProxy } from './reverse-proxy.js';
import type { UpstreamPools } from './upstream-pools.js';

/**
 * The data plane of one process, the same in a single-process booster and in every data-plane
 * worker (ADR 0010): admission, the reverse proxy, the front router and the listener of the
 * booster port. What the process owns and shares with its other parts comes in: the table (a
 * worker's mirrors the primary's), the pools (the primary's health checker and step dispatcher
 * use them too), the metrics, the database-pressure policy (status shows it), the gate and the
 * handler of /_booster/ (the control API, or in a worker the forwarder to the primary).
 */
export interface DataPlaneDeps {
  cfg: BoosterConfig;
  /** This booster's node id (in every access-log line). */
  nodeId: string;
  table: ServerTable;
  pools: UpstreamPools;
  metrics: BoosterMetrics;
  log: Logger;
  /** Admission under database pressure (ADR 0011). */
  pressure: DbPressurePolicy;
  /** The epoch sent upstream as X-Booster-Epoch. */
  epoch: () => number;
  gate: FrontGate;
  control: Handler;
}

export interface DataPlane {
  /** The listener of the booster port (plain node:http, or the TLS / HTTP/2 one with a certificate). */
  readonly server: Server;
  /** This process's access log (reconfigured in place on a reload). */
  readonly access: AccessLog;
  /** Opens the listener on `port` (0: any); resolves with the port. */
  listen(port: number): Promise<number>;
  /**
   * Graceful: stops accepting, lets in-flight requests finish (idle keep-alive connections are
   * closed as they go idle) for at most DRAIN_MS, then destroys. Every caller gets the same promise.
   */
  close(): Promise<void>;
  /** At once: the listener stops accepting, every client connection is cut and every queued request refused. Idempotent. */
  destroy(): void;
  /**
   * The settings object changed in place (a reload): the access log, the client idle timeout and
   * the certificate follow (the rest of the data plane reads the settings at each use).
   */
  reconfigure(): void;
  /** End of validity of the certificate the port serves (ms since the epoch); null without TLS. */
  certificateValidTo(): number | null;
}

/** Keys undici fixes when it makes a pool: a change replaces the pools (the old ones drain). */
const POOL_KEYS = ['connectTimeoutMs', 'headersTimeoutMs', 'idleTimeoutMs', 'keepAliveMs', 'connectionsPerServer'] as const;

/**
 * After a reload changed the settings object in place (`prev`: its values before), the parts of
 * one process that derived something from it follow: new upstream pools, the concurrency limits'
 * ceiling, the data plane's access log, idle timeout and certificate. The same in a single
 * process, in the primary of data-plane workers (no data plane of its own) and in each worker.
 */
export function followSettings(prev: BoosterConfig, cfg: BoosterConfig, parts: { pools: UpstreamPools; table: ServerTable; plane: DataPlane | null }): void {
  if (POOL_KEYS.some((k) => prev[k] !== cfg[k])) parts.pools.reconfigure();
  if (prev.maxInflightPerServer !== cfg.maxInflightPerServer) parts.table.reconfigure();
  parts.plane?.reconfigure();
}

/** Longest graceful drain before the remaining connections are cut. */
export const DRAIN_MS = 30_000;

export function createDataPlane(d: DataPlaneDeps): DataPlane {
  const { cfg, table, metrics, log } = d;
  const admission = new Admission(cfg, (n) => metrics.queued.set(n));
  const access = new AccessLog(accessLogSettingsOf(cfg), log, d.nodeId);
  const proxy = new ReverseProxy({ table, admission, pools: d.pools, metrics, log, access, epoch: d.epoch, opts: cfg });
  let closing: Promise<void> | null = null;
  // Stopping: responses ask the client to close its connection (HTTP/1).
  const gate: FrontGate = {
    serves: () => d.gate.serves(),
    activeUrl: () => d.gate.activeUrl(),
    stopping: () => closing !== null || d.gate.stopping(),
    allowsDistribution: () => d.gate.allowsDistribution(),
    maintenance: () => d.gate.maintenance(),
  };
  const router = createFrontRouter(gate, d.control, proxy, { policy: d.pressure, onShed: () => metrics.dbPressureShed.inc() }, log, { access, epoch: d.epoch });
  const server = openListener(cfg, log, router);
  let destroyed = false;
  let refill: NodeJS.Timeout | undefined;

  function listen(port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, cfg.host, () => {
        refill = setInterval(() => admission.refillFloor(), 1000).unref();
        resolve((server.address() as AddressInfo).port);
      });
    });
  }

  async function drain(): Promise<void> {
    const closed = new Promise<void>((r) => server.close(() => r()));
    server.closeIdleConnections();
    const idleSweep = setInterval(() => server.closeIdleConnections(), 50);
    let giveUp: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([closed, proxy.whenIdle()]), new Promise((r) => (giveUp = setTimeout(r, DRAIN_MS)))]);
    clearTimeout(giveUp);
    clearInterval(idleSweep);
    destroy();
    await access.close();
  }

  function destroy(): void {
    if (destroyed) return;
    destroyed = true;
    if (closing === null) server.close(); // not drained first: stop accepting too
    clearInterval(refill);
    server.closeAllConnections();
    admission.close();
  }

  function reconfigure(): void {
    access.configure(accessLogSettingsOf(cfg));
    server.timeout = cfg.idleTimeoutMs;
    if (cfg.tlsCertFile && cfg.tlsKeyFile) server.reloadCertificate?.({ certFile: cfg.tlsCertFile, keyFile: cfg.tlsKeyFile });
  }

  return {
    server,
    access,
    listen,
    close: () => (closing ??= destroyed ? Promise.resolve() : drain()),
    destroy,
    reconfigure,
    certificateValidTo: () => server.certificateValidTo?.() ?? null,
  };
}

/** The listener made from the booster's settings: no framework on the hot path. */
function openListener(cfg: BoosterConfig, log: Logger, router: FrontRouter): Listener {
  const server = createListener(
    {
      tls: cfg.tlsCertFile && cfg.tlsKeyFile ? { certFile: cfg.tlsCertFile, keyFile: cfg.tlsKeyFile } : null,
      redirectPort: cfg.httpRedirectPort,
      host: cfg.host,
      log,
      leanMaxHeldBodyBytes: cfg.leanHttp1 ? cfg.replayableBodyBytes : null,
      bodyTimeoutMs: cfg.bodyTimeoutMs,
      server: {
        keepAliveTimeout: 5000,
        // The whole request, head and body, within the body timeout (a backstop: the proxy answers
        // a data-plane body first, with its code; this also bounds /_booster/ calls and hand-overs).
        requestTimeout: cfg.bodyTimeoutMs,
        headersTimeout: cfg.bodyTimeoutMs > 0 ? Math.min(30_000, cfg.bodyTimeoutMs) : 30_000,
        // The front router holds every HTTP/1.x request to RFC 9112's Host rule itself (and closes
        // the connection), as the lean path does; node:http's own check answers but reads on.
        requireHostHeader: false,
      },
    },
    router.onRequest,
    router,
  );
  server.timeout = cfg.idleTimeoutMs;
  server.on('upgrade', router.onUpgrade);
  server.on('clientError', refuseMalformed);
  return server;
}

const BAD_REQUEST = 'HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';
const refused = new WeakSet<Duplex>();

/**
 * node:http could not parse what followed on a connection: 400 and close, as the lean path does.
 * An answer still under way for an earlier, valid request on it (pipelining) is finished first;
 * node:http keeps it as the socket's current message. Not when the error cut that very request's
 * body (the client's FIN came mid-body): its answer waits for a body that will never end, and the
 * connection stayed open for good. Called again for every later read of the broken connection:
 * answered once.
 */
function refuseMalformed(_err: Error, socket: Duplex): void {
  if (refused.has(socket)) return;
  refused.add(socket);
  // Not paused: the parser reads no request after its error anyway, and a paused socket would
  // never see its client go away (it stayed open for good).
  const inFlight = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
  let done = false;
  const refuse = () => {
    if (done) return;
    done = true;
    // A 400 cannot follow an answer that began and will not end: the connection is cut instead.
    if (socket.writable && !(inFlight?.headersSent && !inFlight.writableFinished)) socket.end(BAD_REQUEST);
    else socket.destroy();
  };
  if (inFlight && !inFlight.writableFinished && inFlight.req.complete) inFlight.once('finish', refuse).once('close', refuse);
  else refuse();
}
