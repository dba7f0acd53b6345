import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/log.js';
import { HEADER } from '../../common/protocol/headers.js';
import { BoosterErrors } from '../errors.js';
import type { BoosterMetrics } from '../metrics.js';
import { nextRequestId, sendError } from '../replies.js';
import type { ServerTable, ServerView } from '../server-table/server-table.js';
import type { Admission } from './admission.js';
import { type BodyMode, bodyModeOf, HeldRequest, idempotencyKeyOf } from './request.js';
import type { Upstream, UpstreamHandler, UpstreamPools } from './upstream-pools.js';

/**
 * The data plane: a streaming reverse proxy over the upstream pools. Mechanism only (streaming, attempts,
 * retries); the choice of server and its passive health are the table's policy, waiting for a
 * slot and the retry budget are admission's, connections are the upstream pools'. Bodies are
 * never buffered except small ones with a Content-Length, which are held so a retry can resend them.
 */
export interface ReverseProxyOptions {
  maxAttempts: number;
  replayableBodyBytes: number;
  connectTimeoutMs: number;
}

export interface ReverseProxyDeps {
  table: ServerTable;
  admission: Admission;
  pools: UpstreamPools;
  metrics: BoosterMetrics;
  log: Logger;
  /** The epoch sent upstream as X-Booster-Epoch. */
  epoch: () => number;
  opts: ReverseProxyOptions;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  'expect',
  'http2-settings',
]);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);
const RETRY_STATUS = new Set([502, 503, 504]);

/** What every exchange and attempt shares: built once per proxy, so a request allocates nothing for it. */
interface Shared {
  readonly table: ServerTable;
  readonly admission: Admission;
  readonly pools: UpstreamPools;
  readonly metrics: BoosterMetrics;
  readonly log: Logger;
  readonly epoch: () => number;
  readonly maxAttempts: number;
  readonly counter: RequestCounter;
}

/** Incoming requests being handled; graceful stop waits for 0. */
class RequestCounter {
  active = 0;
  #idleWaiters: (() => void)[] = [];

  done(): void {
    this.active--;
    if (this.active === 0) for (const w of this.#idleWaiters.splice(0)) w();
  }

  whenIdle(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((r) => this.#idleWaiters.push(r));
  }
}

const EXCHANGE = Symbol('omflow.exchange');
type TaggedResponse = ServerResponse & { [EXCHANGE]?: Exchange };

/** One shared 'close' listener for every response (no per-request closure). */
function onResponseClose(this: TaggedResponse): void {
  const x = this[EXCHANGE];
  if (!x) return;
  this[EXCHANGE] = undefined;
  x.s.counter.done();
  if (!this.writableFinished) x.abortCurrent?.(new Error('client went away'));
}

/** One shared 'drain' listener: resumes the upstream body of the attempt that is answering. */
function onResponseDrain(this: TaggedResponse): void {
  this[EXCHANGE]?.answering?.resumeUpstream?.();
}

/** Raw header names and values: Buffers from undici, strings from the lean client. */
type RawHeader = Buffer | string;
function latin1(v: RawHeader): string {
  return typeof v === 'string' ? v : v.toString('latin1');
}

/** An app server's 503 that blames the database (HEADER.dbUnavailable); only looked for on a 503. */
function hasDbUnavailable(rawHeaders: RawHeader[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2)
    if (rawHeaders[i].length === HEADER.dbUnavailable.length && latin1(rawHeaders[i]).toLowerCase() === HEADER.dbUnavailable) return true;
  return false;
}

/** A passive failure: the table decides on ejection, the metrics count it. */
function passiveFailure(s: Shared, e: ServerView, weight: number): void {
  if (s.table.recordFailure(e, weight)) s.metrics.ejections.labels(e.id).inc();
}

export class ReverseProxy {
  readonly #s: Shared;
  readonly #replayableBodyBytes: number;
  readonly #connectTimeoutMs: number;

  constructor(d: ReverseProxyDeps) {
    this.#s = {
      table: d.table,
      admission: d.admission,
      pools: d.pools,
      metrics: d.metrics,
      log: d.log,
      epoch: d.epoch,
      maxAttempts: d.opts.maxAttempts,
      counter: new RequestCounter(),
    };
    this.#replayableBodyBytes = d.opts.replayableBodyBytes;
    this.#connectTimeoutMs = d.opts.connectTimeoutMs;
  }

  /** Incoming requests currently being handled. */
  get active(): number {
    return this.#s.counter.active;
  }

  /** Resolves once no request is being handled. */
  whenIdle(): Promise<void> {
    return this.#s.counter.whenIdle();
  }

  /** Handles one data-plane request (the caller already checked role, gate and path). */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#s.counter.active++;
    const method = req.method ?? 'GET';
    if (req instanceof HeldRequest) {
      // The lean front read the whole (small) body already.
      const x = new Exchange(this.#s, req, res, method, req.heldBody === null ? 'none' : 'buffer');
      x.body = req.heldBody;
      (res as TaggedResponse)[EXCHANGE] = x;
      res.on('close', onResponseClose);
      x.run();
      return;
    }
    const mode = bodyModeOf(req, this.#replayableBodyBytes);
    const x = new Exchange(this.#s, req, res, method, mode);
    (res as TaggedResponse)[EXCHANGE] = x;
    res.on('close', onResponseClose);
    if (mode === 'buffer') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        x.body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        x.run();
      });
      req.on('error', () => res.destroy());
    } else {
      x.run();
    }
  }

  /** WebSocket (and any Upgrade): a raw TCP tunnel after the request head. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const s = this.#s;
    const choice = s.table.pick();
    if (choice.kind !== 'server') {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const e = choice.server;
    const { origin } = s.pools.get(e);
    const rid = { value: '' };
    const headers = buildUpstreamHeaders(req, rid, s.epoch(), true);
    const up: Socket = netConnect({ host: origin.hostname, port: Number(origin.port || 80) });
    const fail = () => {
      socket.destroy();
      up.destroy();
    };
    up.setTimeout(this.#connectTimeoutMs, () => {
      if (up.connecting) fail();
    });
    up.once('connect', () => {
      up.setTimeout(0);
      let head0 = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < headers.length; i += 2) head0 += `${headers[i]}: ${headers[i + 1]}\r\n`;
      up.write(`${head0}\r\n`);
      if (head?.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => {
      if (up.connecting) passiveFailure(s, e, 5);
      fail();
    });
    socket.on('error', fail);
    socket.on('close', () => up.destroy());
    up.on('close', () => socket.destroy());
  }
}

/** Upstream request headers: hop-by-hop stripped, forwarding headers and the epoch set. */
export function buildUpstreamHeaders(req: IncomingMessage, requestId: { value: string }, epoch: number, keepUpgrade = false): string[] {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let xff: string | undefined;
  let host: string | undefined;
  let extraHop: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.length < 32 ? name.toLowerCase() : name;
    if (lower.charCodeAt(0) === 58 /* ':' h2 pseudo-header */) {
      if (lower === ':authority') host ??= raw[i + 1];
      continue;
    }
    if (lower === 'connection') {
      if (keepUpgrade) out.push(name, raw[i + 1]);
      for (const t of raw[i + 1].split(',')) {
        const tok = t.trim().toLowerCase();
        if (tok && tok !== 'close' && tok !== 'keep-alive' && tok !== 'upgrade') (extraHop ??= new Set()).add(tok);
      }
      continue;
    }
    if (HOP_BY_HOP.has(lower)) {
      if (keepUpgrade && lower === 'upgrade') out.push(name, raw[i + 1]);
      continue;
    }
    switch (lower) {
      case 'x-forwarded-for':
        xff = xff ? `${xff}, ${raw[i + 1]}` : raw[i + 1];
        continue;
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
      case HEADER.epoch:
        continue;
      case HEADER.requestId:
        requestId.value = raw[i + 1];
        continue;
      case 'host':
        host = raw[i + 1];
        break;
    }
    out.push(name, raw[i + 1]);
  }
  if (extraHop) {
    const filtered: string[] = [];
    for (let i = 0; i < out.length; i += 2) if (!extraHop.has(out[i].toLowerCase())) filtered.push(out[i], out[i + 1]);
    out.length = 0;
    out.push(...filtered);
  }
  const remote = req.socket.remoteAddress ?? '';
  if (!requestId.value) requestId.value = nextRequestId();
  out.push(
    'x-forwarded-for',
    xff ? `${xff}, ${remote}` : remote,
    'x-forwarded-proto',
    (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
    'x-request-id',
    requestId.value,
    HEADER.epoch,
    String(epoch),
  );
  if (host) out.push('x-forwarded-host', host);
  if (host && req.httpVersionMajor === 2 && req.headers.host === undefined) out.push('host', host);
  return out;
}

/** One client request across its attempts. */
class Exchange {
  body: Buffer | null = null;
  headers: string[];
  readonly tried = new Set<string>();
  readonly requestId = { value: '' };
  attempts = 0;
  /** When the request first waited for a server slot (0: never); its whole wait is bounded by the queue timeout. */
  queuedAt = 0;
  responded = false;
  readonly keyed: boolean;
  readonly idempotent: boolean;
  /** Aborts the upstream request of the current attempt. */
  abortCurrent: ((err?: Error) => void) | null = null;
  /** The attempt whose response is being sent to the client. */
  answering: Attempt | null = null;
  lastError: { code: string; status: number; message: string } | null = null;

  constructor(
    readonly s: Shared,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly method: string,
    readonly mode: BodyMode,
  ) {
    this.headers = buildUpstreamHeaders(req, this.requestId, s.epoch());
    this.idempotent = IDEMPOTENT.has(method);
    this.keyed = idempotencyKeyOf(req) !== undefined;
    s.admission.earn();
  }

  /** A body can be sent again: none, held, or a stream nothing has read yet. */
  replayable(): boolean {
    if (this.mode !== 'stream') return true;
    return !this.req.readableDidRead && !this.req.destroyed;
  }

  /** Starts (or restarts) the exchange; a throw on the way is a defect that answers 500, never an unhandled rejection. */
  run(): void {
    this.start().catch((err: unknown) => {
      this.s.log.error({ err, requestId: this.requestId.value }, 'proxying a request failed');
      this.abortCurrent?.(err as Error);
      sendError(this.res, BoosterErrors.BOOSTER_ERR_INTERNAL());
    });
  }

  async start(): Promise<void> {
    const s = this.s;
    for (;;) {
      if (this.res.destroyed) return;
      const choice = s.table.pick(this.tried);
      if (choice.kind === 'no-server') {
        if (this.tried.size === 0) sendError(this.res, BoosterErrors.BOOSTER_ERR_NO_SERVER());
        else sendError(this.res, this.lastError ?? BoosterErrors.BOOSTER_ERR_UPSTREAM());
        return;
      }
      if (choice.kind === 'no-room') {
        // Woken but beaten to the slot: back to the head of the queue, with the wait left.
        const now = performance.now();
        const again = this.queuedAt !== 0;
        if (!again) this.queuedAt = now;
        const left = s.admission.queueTimeoutMs - (now - this.queuedAt);
        const wait = left > 0 ? s.admission.waitForSlot(left, again, this.queuedAt) : Promise.resolve(false);
        if (wait === null) return sendError(this.res, BoosterErrors.BOOSTER_ERR_OVERLOADED());
        if (!(await wait)) return sendError(this.res, BoosterErrors.BOOSTER_ERR_QUEUE_TIMEOUT());
        continue;
      }
      const e = choice.server;
      this.attempts++;
      this.tried.add(e.id);
      let up: Upstream;
      try {
        up = s.pools.get(e);
      } catch {
        return sendError(this.res, BoosterErrors.BOOSTER_ERR_NO_SERVER()); // pools closed: the booster is stopping
      }
      const attempt = new Attempt(this, e, s.table.startRequest(e));
      const path = this.req.url ?? '/';
      // A streamed body needs undici; one in memory (or none) takes the lean client when there is one.
      if (this.mode === 'stream') up.pool.dispatch({ method: this.method, path, headers: this.headers, body: this.req }, attempt);
      else (up.http1 ?? up.pool).dispatch({ method: this.method, path, headers: this.headers, body: this.body }, attempt);
      return;
    }
  }

  /** Decides whether a failed attempt may go to another server (never duplicates a write). */
  mayRetry(reason: 'connect' | 'status' | 'reset'): boolean {
    if (this.responded || this.attempts >= this.s.maxAttempts || !this.replayable()) return false;
    if (reason !== 'connect' && !(this.idempotent || this.keyed)) return false;
    // A retry needs another server to go to.
    if (this.s.table.pick(this.tried).kind === 'no-server') return false;
    return this.s.admission.spendRetry();
  }

  retry(reason: 'connect' | 'status' | 'reset'): void {
    this.s.metrics.retries.labels(reason).inc();
    this.run();
  }
}

/**
 * One attempt of an exchange on one server: the undici dispatch handler. A class, not a set of
 * closures, so the hot path allocates one object per attempt.
 */
class Attempt implements UpstreamHandler {
  readonly startedAt = performance.now();
  headersAt = 0;
  status: number | null = null;
  superseded = false;
  settled = false;
  resumeUpstream: (() => void) | null = null;

  constructor(
    readonly x: Exchange,
    readonly e: ServerView,
    readonly pendingAtSend: number,
  ) {}

  /** The server slot is free again: count the outcome and wake a queued request. */
  settle(): void {
    if (this.settled) return;
    this.settled = true;
    const s = this.x.s;
    // Requests wait only while no server has room: wake one when this server has room again.
    if (s.table.endRequest(this.e, this.headersAt !== 0)) s.admission.release();
    const stats = s.metrics.statsOf(this.e.id);
    stats.count(this.status);
    if (this.headersAt) stats.observe((this.headersAt - this.startedAt) / 1000);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.x.abortCurrent = abort;
    if (this.x.res.destroyed) abort(new Error('client went away'));
  }

  onHeaders(statusCode: number, rawHeaders: RawHeader[], resume: () => void, statusText?: string): boolean {
    if (statusCode < 200) return true; // 1xx: the final response follows
    const x = this.x;
    const e = this.e;
    this.headersAt = performance.now();
    this.status = statusCode;
    // The server has done its work: its adaptive limit learns the time, and a queued request may take the slot.
    if (x.s.table.headersReceived(e, this.headersAt - this.startedAt, this.pendingAtSend)) x.s.admission.release();
    // The server's database is unreachable: every server shares it, so this is neither the
    // server's fault (no passive failure, no ejection) nor worth a retry elsewhere (same answer, more load).
    const dbDown = statusCode === 503 && hasDbUnavailable(rawHeaders);
    if (statusCode >= 500) {
      if (!dbDown) passiveFailure(x.s, e, 1);
    } else x.s.table.recordSuccess(e);
    if (RETRY_STATUS.has(statusCode) && !dbDown && x.mayRetry('status')) {
      const abort = x.abortCurrent;
      this.superseded = true;
      this.settle();
      abort?.(new Error('retrying on another server'));
      x.retry('status');
      return false;
    }
    x.responded = true;
    x.answering = this;
    this.resumeUpstream = resume;
    const out: string[] = [];
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = latin1(rawHeaders[i]);
      if (HOP_BY_HOP.has(name.length < 32 ? name.toLowerCase() : name)) continue;
      out.push(name, latin1(rawHeaders[i + 1]));
    }
    out.push(HEADER.upstream, e.id);
    const res = x.res;
    try {
      res.writeHead(statusCode, (x.req.httpVersionMajor < 2 && statusText) || undefined, out);
    } catch (err) {
      // A head the client's protocol cannot carry (HTTP/2 refuses some HTTP/1.1 headers): 502, not a crash.
      x.s.log.warn({ err, server: e.id, requestId: x.requestId.value }, 'the server answered a head that cannot be relayed');
      this.superseded = true;
      this.settle();
      x.abortCurrent?.(err as Error);
      sendError(res, BoosterErrors.BOOSTER_ERR_UPSTREAM());
      return false;
    }
    res.on('drain', onResponseDrain);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.superseded) return true;
    return this.x.res.write(chunk);
  }

  onComplete(): void {
    if (this.superseded) return;
    this.settle();
    this.x.res.end();
  }

  onError(err: Error & { code?: string }): void {
    if (this.superseded) return;
    this.settle();
    const x = this.x;
    const res = x.res;
    if (x.responded) {
      res.destroy(err);
      return;
    }
    const code = err.code ?? '';
    const connect = CONNECT_ERRORS.has(code);
    if (connect) passiveFailure(x.s, this.e, 5);
    if (res.destroyed) return;
    x.lastError = code === 'UND_ERR_HEADERS_TIMEOUT' ? BoosterErrors.BOOSTER_ERR_UPSTREAM_TIMEOUT() : BoosterErrors.BOOSTER_ERR_UPSTREAM();
    const reason = connect ? 'connect' : 'reset';
    if (x.mayRetry(reason)) {
      x.retry(reason);
      return;
    }
    x.s.log.warn({ err, server: this.e.id, requestId: x.requestId.value }, 'proxied request failed');
    sendError(res, x.lastError);
  }
}
