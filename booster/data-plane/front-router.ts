import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/log.js';
import { BOOSTER_PATH, HEADER } from '../../common/protocol/headers.js';
import { BoosterErrors } from '../errors.js';
import { isGateExempt, renderGatedResponse } from '../license/gate.js';
import { sendError } from '../replies.js';
import { type DbPressurePolicy, requestKind } from './db-pressure.js';
import { isInternalPath } from './internal-paths.js';
import { idempotencyKeyOf } from './request.js';
import type { ReverseProxy } from './reverse-proxy.js';

/**
 * What the client-facing port needs to know of the booster to route a request: role, license
 * gate, stopping. In a single process it reads leadership and the gate directly; in a data-plane
 * worker it reads the state the primary last pushed (ADR 0010). Same checks, same answers, both ways.
 */
export interface FrontGate {
  /** Active, or a standby configured to serve. */
  serves(): boolean;
  activeUrl(): string | null;
  stopping(): boolean;
  allowsDistribution(): boolean;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** Admission under database pressure (ADR 0011): each process runs the policy on its own table (a worker's mirrors the primary's heartbeats). */
export interface FrontPressure {
  policy: Pick<DbPressurePolicy, 'admit' | 'retryAfterSeconds'>;
  onShed: () => void;
}

/** The hot path: prefix check for /_booster/ → role / `/_internal/` / license gate / database pressure → proxy. */
export function createFrontRouter(
  gate: FrontGate,
  control: Handler,
  proxy: ReverseProxy,
  pressure: FrontPressure,
  log: Logger,
): { onRequest: Handler; onUpgrade: UpgradeHandler } {
  function route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    if (url.startsWith(BOOSTER_PATH.prefix)) {
      control(req, res);
      return;
    }
    if (gate.stopping() && req.httpVersionMajor < 2) res.setHeader('connection', 'close');
    if (!gate.serves()) {
      const activeUrl = gate.activeUrl();
      sendError(res, BoosterErrors.BOOSTER_ERR_STANDBY(), activeUrl ? { 'retry-after': '1', [HEADER.active]: activeUrl } : { 'retry-after': '1' });
      return;
    }
    if (isInternalPath(url)) {
      sendError(res, BoosterErrors.BOOSTER_ERR_INTERNAL_PATH());
      return;
    }
    if (!gate.allowsDistribution() && !isGateExempt(url)) {
      const g = renderGatedResponse(req.headers.accept);
      res.writeHead(g.status, { ...g.headers, 'content-length': Buffer.byteLength(g.body) });
      return void res.end(g.body);
    }
    if (!pressure.policy.admit(requestKind(url, idempotencyKeyOf(req)))) {
      pressure.onShed();
      sendError(res, BoosterErrors.BOOSTER_ERR_DB_PRESSURE(), { 'retry-after': String(pressure.policy.retryAfterSeconds) });
      return;
    }
    proxy.handle(req, res);
  }

  /** A throw on the way to the proxy is a defect: that request gets 500 with a code, the process keeps serving everyone else. */
  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    try {
      route(req, res);
    } catch (err) {
      log.error({ err, method: req.method, path: req.url }, 'request handling failed');
      sendError(res, BoosterErrors.BOOSTER_ERR_INTERNAL());
    }
  }

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    try {
      upgrade(req, socket, head);
    } catch (err) {
      log.error({ err, method: req.method, path: req.url }, 'upgrade handling failed');
      socket.destroy();
    }
  }

  function upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = req.url ?? '/';
    if (!gate.serves() || isInternalPath(url) || url.startsWith(BOOSTER_PATH.prefix) || (!gate.allowsDistribution() && !isGateExempt(url))) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    proxy.upgrade(req, socket, head);
  }

  return { onRequest, onUpgrade };
}
