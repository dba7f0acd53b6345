import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { OmflowError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { BOOSTER_PATH, HEADER } from '../../common/protocol/headers.js';
import { BoosterErrors } from '../errors.js';
import { LicenseGateErrors } from '../license/errors.js';
import { isGateExempt, renderGatedResponse } from '../license/gate.js';
import { answerError, rawAnswer, refuseUpgrade, UPGRADE_UNAVAILABLE } from '../replies.js';
import { type AccessLog, OwnAnswer } from './access-log.js';
import { type DbPressurePolicy, requestKind } from './db-pressure.js';
import { isInternalPath } from './internal-paths.js';
import { type MaintenanceView, renderMaintenance } from './maintenance-page.js';
import { HeldRequest, idempotencyKeyOf } from './request.js';
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
  /** Cluster-wide maintenance mode (`omflow maintenance on`), or null. */
  maintenance(): MaintenanceView | null;
}

const LICENSE_REQUIRED = LicenseGateErrors.BOOSTER_ERR_LICENSE_REQUIRED.code;

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** Admission under database pressure (ADR 0011): each process runs the policy on its own table (a worker's mirrors the primary's heartbeats). */
export interface FrontPressure {
  policy: Pick<DbPressurePolicy, 'admit' | 'retryAfterSeconds'>;
  onShed: () => void;
}

/** HTTP/1.x connections that had a request refused as malformed: nothing more is handled on them. */
const refusedSockets = new WeakSet<object>();

/**
 * What no path may pass on (the lean HTTP/1.1 front refuses the same before a request gets
 * here): an HTTP/1 request line claiming another version; a repeated Host on any HTTP/1.x
 * request, a missing one on HTTP/1.1 (RFC 9112 3.2: the app server and the booster could
 * otherwise read different hosts); a target that is neither a path nor an absolute http(s) URL
 * (asterisk- or authority-form, which no app server route answers).
 */
/** A request of an HTTP/2 stream (node:http2's compatibility API), not an HTTP/1 line that says 2.0. */
function isHttp2(req: IncomingMessage): boolean {
  return (req as { stream?: unknown }).stream !== undefined;
}

function malformed(req: IncomingMessage, url: string): OmflowError | null {
  const major = req.httpVersionMajor;
  if (major === 2) return isHttp2(req) ? null : BoosterErrors.BOOSTER_ERR_HTTP_VERSION();
  if (major !== 1) return BoosterErrors.BOOSTER_ERR_HTTP_VERSION();
  if (!(req instanceof HeldRequest)) {
    let hosts = 0;
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') hosts++;
    if (hosts > 1 || (hosts === 0 && req.httpVersionMinor === 1)) return BoosterErrors.BOOSTER_ERR_BAD_REQUEST();
  }
  if (url.charCodeAt(0) !== 47 /* '/' */ && !/^https?:\/\//i.test(url)) return BoosterErrors.BOOSTER_ERR_BAD_REQUEST();
  return null;
}

export interface FrontRouter {
  onRequest: Handler;
  onUpgrade: UpgradeHandler;
  /** Expect: 100-continue: a malformed request is refused without 100 Continue; otherwise 100, then routed. */
  onCheckContinue: Handler;
  /** Any other expectation: a malformed request is refused as always; otherwise 417 and the connection closes. */
  onCheckExpectation: Handler;
}

/** The access log of the data plane, and the epoch its lines carry, for the answers the router gives itself. */
export interface FrontAccess {
  access: AccessLog;
  epoch: () => number;
}

/**
 * The hot path: prefix check for /_booster/ → role / `/_internal/` / license gate / maintenance /
 * database pressure → proxy. Maintenance lets through what the license gate lets through (admin
 * pages, login, health checks), so an administrator can still reach the admin page.
 */
export function createFrontRouter(
  gate: FrontGate,
  control: Handler,
  proxy: ReverseProxy,
  pressure: FrontPressure,
  log: Logger,
  front: FrontAccess,
): FrontRouter {
  const { access } = front;

  /** The booster's own answer, in the access log too. */
  function refuse(req: IncomingMessage, res: ServerResponse, err: { code: string; status: number; message: string }, extra?: Record<string, string>): void {
    const bytes = answerError(res, err, extra);
    if (access.on) access.record(new OwnAnswer(req, front.epoch(), err.code, bytes), res.headersSent ? err.status : 0, 0);
  }

  function route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const refusal = malformed(req, url);
    if (refusal) {
      // HTTP/0.9 has no status line to carry an answer: the connection just closes (as on the lean path).
      if (req.httpVersionMajor === 0) return void req.socket.destroy();
      if (!isHttp2(req)) {
        // Nothing after a refused request is read (the lean path does the same): a request
        // pipelined behind it is never proxied, and node:http closes once this answer is out.
        refusedSockets.add(req.socket);
        res.setHeader('connection', 'close');
      }
      refuse(req, res, refusal);
      return;
    }
    // A request node:http parsed behind a refused one on the same connection: left unanswered,
    // the connection closes after the refusal.
    if (refusedSockets.has(req.socket)) return;
    if (url.startsWith(BOOSTER_PATH.prefix)) {
      control(req, res);
      return;
    }
    if (gate.stopping() && req.httpVersionMajor < 2) res.setHeader('connection', 'close');
    if (!gate.serves()) {
      const activeUrl = gate.activeUrl();
      refuse(req, res, BoosterErrors.BOOSTER_ERR_STANDBY(), activeUrl ? { 'retry-after': '1', [HEADER.active]: activeUrl } : { 'retry-after': '1' });
      return;
    }
    if (isInternalPath(url)) {
      refuse(req, res, BoosterErrors.BOOSTER_ERR_INTERNAL_PATH());
      return;
    }
    if (!gate.allowsDistribution() && !isGateExempt(url)) {
      const g = renderGatedResponse(req.headers.accept);
      const bytes = Buffer.byteLength(g.body);
      res.writeHead(g.status, { ...g.headers, 'content-length': bytes });
      res.end(g.body);
      if (access.on) access.record(new OwnAnswer(req, front.epoch(), LICENSE_REQUIRED, bytes), g.status, 0);
      return;
    }
    const maintenance = gate.maintenance();
    if (maintenance && !isGateExempt(url)) {
      const m = renderMaintenance(maintenance, req.headers.accept, req.headers['accept-language']);
      const bytes = Buffer.byteLength(m.body);
      res.writeHead(m.status, { ...m.headers, 'content-length': bytes });
      res.end(m.body);
      if (access.on) access.record(new OwnAnswer(req, front.epoch(), BoosterErrors.BOOSTER_ERR_MAINTENANCE.code, bytes), m.status, 0);
      return;
    }
    if (!pressure.policy.admit(requestKind(url, idempotencyKeyOf(req)))) {
      pressure.onShed();
      refuse(req, res, BoosterErrors.BOOSTER_ERR_DB_PRESSURE(), { 'retry-after': String(pressure.policy.retryAfterSeconds) });
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
      refuse(req, res, BoosterErrors.BOOSTER_ERR_INTERNAL());
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
    const refusal = malformed(req, url);
    if (refusal) {
      // HTTP/0.9 has no status line to carry an answer: the connection just closes (as for any other request).
      if (req.httpVersionMajor === 0) return void socket.destroy();
      refuseUpgrade(socket, rawAnswer(refusal));
      if (access.on) access.record(new OwnAnswer(req, front.epoch(), refusal.code, 0), refusal.status, 0);
      return;
    }
    const refused = !gate.serves()
      ? BoosterErrors.BOOSTER_ERR_STANDBY.code
      : isInternalPath(url) || url.startsWith(BOOSTER_PATH.prefix)
        ? BoosterErrors.BOOSTER_ERR_INTERNAL_PATH.code
        : !gate.allowsDistribution() && !isGateExempt(url)
          ? LICENSE_REQUIRED
          : gate.maintenance() !== null && !isGateExempt(url)
            ? BoosterErrors.BOOSTER_ERR_MAINTENANCE.code
            : null;
    if (refused !== null) {
      refuseUpgrade(socket, UPGRADE_UNAVAILABLE);
      if (access.on) access.record(new OwnAnswer(req, front.epoch(), refused, 0), 503, 0);
      return;
    }
    proxy.upgrade(req, socket, head);
  }

  function onCheckContinue(req: IncomingMessage, res: ServerResponse): void {
    if (!malformed(req, req.url ?? '/')) res.writeContinue();
    onRequest(req, res);
  }

  function onCheckExpectation(req: IncomingMessage, res: ServerResponse): void {
    if (malformed(req, req.url ?? '/')) return void onRequest(req, res);
    if (!isHttp2(req)) {
      // The body the client holds back (or sends anyway) is never read as a request.
      refusedSockets.add(req.socket);
      res.setHeader('connection', 'close');
    }
    refuse(req, res, BoosterErrors.BOOSTER_ERR_EXPECTATION_FAILED());
  }

  return { onRequest, onUpgrade, onCheckContinue, onCheckExpectation };
}
