import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../../common/log.js';
import type { BoosterConfig } from '../config.js';
import type { BoosterMetrics } from '../metrics.js';
import type { ServerTable } from '../server-table/server-table.js';
import { Admission } from './admission.js';
import type { DbPressurePolicy } from './db-pressure.js';
import { createFrontRouter, type FrontGate, type Handler, type UpgradeHandler } from './front-router.js';
import { createListener } from './listener.js';
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
  /** Opens the listener on `port` (0: any); resolves with the port. */
  listen(port: number): Promise<number>;
  /**
   * Graceful: stops accepting, lets in-flight requests finish (idle keep-alive connections are
   * closed as they go idle) for at most DRAIN_MS, then destroys. Every caller gets the same promise.
   */
  close(): Promise<void>;
  /** At once: every client connection is cut and every queued request refused. Idempotent. */
  destroy(): void;
}

/** Longest graceful drain before the remaining connections are cut. */
export const DRAIN_MS = 30_000;

export function createDataPlane(d: DataPlaneDeps): DataPlane {
  const { cfg, table, metrics, log } = d;
  const admission = new Admission(cfg, (n) => metrics.queued.set(n));
  const proxy = new ReverseProxy({ table, admission, pools: d.pools, metrics, log, epoch: d.epoch, opts: cfg });
  let closing: Promise<void> | null = null;
  // Stopping: responses ask the client to close its connection (HTTP/1).
  const gate: FrontGate = {
    serves: () => d.gate.serves(),
    activeUrl: () => d.gate.activeUrl(),
    stopping: () => closing !== null || d.gate.stopping(),
    allowsDistribution: () => d.gate.allowsDistribution(),
  };
  const router = createFrontRouter(gate, d.control, proxy, { policy: d.pressure, onShed: () => metrics.dbPressureShed.inc() }, log);
  const server = openListener(cfg, log, router.onRequest, router.onUpgrade);
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
  }

  function destroy(): void {
    if (destroyed) return;
    destroyed = true;
    clearInterval(refill);
    server.closeAllConnections();
    admission.close();
  }

  return {
    server,
    listen,
    close: () => (closing ??= drain()),
    destroy,
  };
}

/** The listener made from the booster's settings: no framework on the hot path. */
function openListener(cfg: BoosterConfig, log: Logger, onRequest: Handler, onUpgrade: UpgradeHandler): Server {
  const server = createListener(
    {
      tls: cfg.tlsCertFile && cfg.tlsKeyFile ? { certFile: cfg.tlsCertFile, keyFile: cfg.tlsKeyFile } : null,
      redirectPort: cfg.httpRedirectPort,
      host: cfg.host,
      log,
      leanMaxHeldBodyBytes: cfg.leanHttp1 ? cfg.replayableBodyBytes : null,
      server: { keepAliveTimeout: 5000, requestTimeout: 0, headersTimeout: 30_000 },
    },
    onRequest,
  );
  server.timeout = cfg.idleTimeoutMs;
  server.on('upgrade', onUpgrade);
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
  });
  return server;
}
