import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { Logger } from '../common/log.js';
import { HEADER } from '../common/protocol/headers.js';
import { BoosterErrors } from './errors.js';
import type { BoosterMetrics } from './metrics.js';
import type { ServerEntry, ServerTable } from './server-table.js';

/**
 * The data plane: a streaming reverse proxy on undici. Mechanism only (pools, queueing,
 * retries, streaming); the choice of server is the table's policy. Bodies are never
 * buffered except small ones with a Content-Length, which are held so a retry can resend them.
 */
export interface ProxyOptions {
  maxAttempts: number;
  retryBudgetPercent: number;
  replayableBodyBytes: number;
  queueSize: number;
  queueTimeoutMs: number;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  keepAliveMs: number;
  connectionsPerServer: number;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-authenticate', 'expect', 'http2-settings']);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL']);
const RETRY_STATUS = new Set([502, 503, 504]);

export function sendError(res: ServerResponse, err: { code: string; status: number; message: string }, extra?: Record<string, string>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ code: err.code, message: err.message });
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extra };
  if (err.status === 503 && !headers['retry-after']) headers['retry-after'] = '1';
  res.writeHead(err.status, headers);
  res.end(body);
}

/** X-Request-ID when the client sent none: a per-process random prefix and a counter (unique, cheap). */
const ID_PREFIX = randomBytes(6).toString('hex');
let idSeq = 0;
export function nextRequestId(): string {
  return `${ID_PREFIX}-${(++idSeq).toString(36)}`;
}

const EXCHANGE = Symbol('omflow.exchange');
type TaggedResponse = ServerResponse & { [EXCHANGE]?: Exchange };

/** One shared 'close' listener for every response (no per-request closure). */
function onResponseClose(this: TaggedResponse): void {
  const x = this[EXCHANGE];
  if (!x) return;
  this[EXCHANGE] = undefined;
  x.proxy.requestDone();
  if (!this.writableFinished) x.abortCurrent?.(new Error('client went away'));
}

/** One shared 'drain' listener: resumes the upstream body of the attempt that is answering. */
function onResponseDrain(this: TaggedResponse): void {
  this[EXCHANGE]?.answering?.resumeUpstream?.();
}

type Waiter = { resolve: (ok: boolean) => void; timer: NodeJS.Timeout };

export class Proxy {
  readonly #pools = new Map<string, { url: string; pool: Pool; origin: URL }>();
  readonly #queue: Waiter[] = [];
  #retryTokens = 10;
  #closed = false;
  /** Incoming requests currently being handled (graceful stop waits for 0). */
  active = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(
    readonly table: ServerTable,
    private readonly opts: ProxyOptions,
    readonly metrics: BoosterMetrics,
    private readonly epoch: () => number,
    private readonly log: Logger,
    private readonly onEjected: (e: ServerEntry) => void,
  ) {}

  poolFor(e: ServerEntry): { pool: Pool; origin: URL } {
    let p = this.#pools.get(e.id);
    if (!p || p.url !== e.url) {
      if (p) void p.pool.close().catch(() => {});
      const origin = new URL(e.url);
      const pool = new Pool(origin.origin, {
        connections: this.opts.connectionsPerServer,
        pipelining: 1,
        connect: { timeout: this.opts.connectTimeoutMs },
        headersTimeout: this.opts.headersTimeoutMs,
        bodyTimeout: this.opts.idleTimeoutMs,
        keepAliveTimeout: this.opts.keepAliveMs,
        keepAliveMaxTimeout: this.opts.keepAliveMs,
      });
      p = { url: e.url, pool, origin };
      this.#pools.set(e.id, p);
    }
    return p;
  }

  /** Handles one data-plane request (the caller already checked role, gate and path). */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.active++;
    const method = req.method ?? 'GET';
    const cl = req.headers['content-length'];
    const te = req.headers['transfer-encoding'];
    let mode: 'none' | 'buffer' | 'stream' = 'none';
    // h2: a body may come without content-length; END_STREAM on the headers says there is none.
    if (te !== undefined || (cl === undefined && req.httpVersionMajor === 2 && !(req as unknown as { stream: { endAfterHeaders: boolean } }).stream.endAfterHeaders)) mode = 'stream';
    else if (cl !== undefined && cl !== '0') mode = Number(cl) <= this.opts.replayableBodyBytes ? 'buffer' : 'stream';
    const x = new Exchange(this, req, res, method, mode);
    (res as TaggedResponse)[EXCHANGE] = x;
    res.on('close', onResponseClose);
    if (mode === 'buffer') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        x.body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        void x.start();
      });
      req.on('error', () => res.destroy());
    } else {
      void x.start();
    }
  }

  requestDone(): void {
    this.active--;
    if (this.active === 0) for (const w of this.#idleWaiters.splice(0)) w();
  }

  whenIdle(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((r) => this.#idleWaiters.push(r));
  }

  /** A server slot may be free: wake the oldest waiter. */
  release(): void {
    const w = this.#queue.shift();
    if (w) {
      clearTimeout(w.timer);
      this.metrics.queued.set(this.#queue.length);
      w.resolve(true);
    }
  }

  /** Waits for a free slot; false on timeout, null when the queue is full. */
  waitForSlot(): Promise<boolean> | null {
    if (this.#queue.length >= this.opts.queueSize) return null;
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        resolve,
        timer: setTimeout(() => {
          const i = this.#queue.indexOf(w);
          if (i >= 0) this.#queue.splice(i, 1);
          this.metrics.queued.set(this.#queue.length);
          resolve(false);
        }, this.opts.queueTimeoutMs),
      };
      this.#queue.push(w);
      this.metrics.queued.set(this.#queue.length);
    });
  }

  /** Retry budget: every request earns a share of a retry; a small floor lets single failures retry. */
  earn(): void {
    this.#retryTokens = Math.min(this.#retryTokens + this.opts.retryBudgetPercent / 100, 100);
  }

  spendRetry(): boolean {
    if (this.#retryTokens < 1) return false;
    this.#retryTokens--;
    return true;
  }

  refillFloor(): void {
    // Called once a second: at least a few retries per second are always allowed.
    this.#retryTokens = Math.max(this.#retryTokens, 10);
  }

  /** Builds upstream request headers: hop-by-hop stripped, forwarding headers and epoch set. */
  buildHeaders(req: IncomingMessage, requestId: { value: string }, keepUpgrade = false): string[] {
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
      'x-forwarded-for', xff ? `${xff}, ${remote}` : remote,
      'x-forwarded-proto', (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
      'x-request-id', requestId.value,
      HEADER.epoch, String(this.epoch()),
    );
    if (host) out.push('x-forwarded-host', host);
    if (host && req.httpVersionMajor === 2 && req.headers.host === undefined) out.push('host', host);
    return out;
  }

  dispatch(e: ServerEntry, x: Exchange, body: Dispatcher.DispatchOptions['body']): void {
    const { pool } = this.poolFor(e);
    e.inflight++;
    pool.dispatch({ method: x.method as Dispatcher.HttpMethod, path: x.req.url ?? '/', headers: x.headers, body }, new Attempt(x, e) as unknown as Dispatcher.DispatchHandler);
  }

  finished(e: ServerEntry, status: number | null, startedAt: number, headersAt: number): void {
    e.inflight--;
    const s = this.metrics.statsOf(e.id);
    s.count(status);
    if (headersAt) s.observe((headersAt - startedAt) / 1000);
    this.release();
  }

  passiveFailure(e: ServerEntry, weight: number): void {
    if (this.table.recordFailure(e, weight)) {
      this.metrics.ejections.labels(e.id).inc();
      this.onEjected(e);
    }
  }

  /** WebSocket (and any Upgrade): a raw TCP tunnel after the request head. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const e = this.table.pick();
    if (!e) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const { origin } = this.poolFor(e);
    const rid = { value: '' };
    const headers = this.buildHeaders(req, rid, true);
    const up: Socket = netConnect({ host: origin.hostname, port: Number(origin.port || 80) });
    const fail = () => {
      socket.destroy();
      up.destroy();
    };
    up.setTimeout(this.opts.connectTimeoutMs, () => {
      if (up.connecting) fail();
    });
    up.once('connect', () => {
      up.setTimeout(0);
      let head0 = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < headers.length; i += 2) head0 += `${headers[i]}: ${headers[i + 1]}\r\n`;
      up.write(head0 + '\r\n');
      if (head?.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => {
      if (up.connecting) this.passiveFailure(e, 5);
      fail();
    });
    socket.on('error', fail);
    socket.on('close', () => up.destroy());
    up.on('close', () => socket.destroy());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#queue.splice(0)) {
      clearTimeout(w.timer);
      w.resolve(false);
    }
    await Promise.all([...this.#pools.values()].map((p) => p.pool.close().catch(() => {})));
  }

  destroy(): void {
    for (const p of this.#pools.values()) void p.pool.destroy().catch(() => {});
  }

  get logger(): Logger {
    return this.log;
  }

  get maxAttempts(): number {
    return this.opts.maxAttempts;
  }
}

/** One client request across its attempts. */
class Exchange {
  body: Buffer | null = null;
  headers: string[];
  readonly tried = new Set<string>();
  readonly requestId = { value: '' };
  attempts = 0;
  responded = false;
  readonly keyed: boolean;
  readonly idempotent: boolean;
  /** Aborts the upstream request of the current attempt. */
  abortCurrent: ((err?: Error) => void) | null = null;
  /** The attempt whose response is being sent to the client. */
  answering: Attempt | null = null;

  constructor(
    readonly proxy: Proxy,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly method: string,
    readonly mode: 'none' | 'buffer' | 'stream',
  ) {
    this.headers = proxy.buildHeaders(req, this.requestId);
    this.idempotent = IDEMPOTENT.has(method);
    this.keyed = req.headers[HEADER.idempotencyKey] !== undefined;
    proxy.earn();
  }

  /** A body can be sent again: none, held, or a stream nothing has read yet. */
  replayable(): boolean {
    if (this.mode !== 'stream') return true;
    return !this.req.readableDidRead && !this.req.destroyed;
  }

  async start(): Promise<void> {
    for (;;) {
      if (this.res.destroyed) return;
      const e = this.proxy.table.pick(this.tried);
      if (e === null) {
        if (this.tried.size === 0) sendError(this.res, BoosterErrors.BOOSTER_ERR_NO_SERVER());
        else sendError(this.res, this.lastError ?? BoosterErrors.BOOSTER_ERR_UPSTREAM());
        return;
      }
      if (e === undefined) {
        const wait = this.proxy.waitForSlot();
        if (wait === null) return sendError(this.res, BoosterErrors.BOOSTER_ERR_OVERLOADED());
        if (!(await wait)) return sendError(this.res, BoosterErrors.BOOSTER_ERR_QUEUE_TIMEOUT());
        continue;
      }
      this.attempts++;
      this.tried.add(e.id);
      this.proxy.dispatch(e, this, this.mode === 'stream' ? this.req : this.body);
      return;
    }
  }

  lastError: { code: string; status: number; message: string } | null = null;

  /** Decides whether a failed attempt may go to another server (never duplicates a write). */
  mayRetry(reason: 'connect' | 'status' | 'reset'): boolean {
    if (this.responded || this.attempts >= this.proxy.maxAttempts || !this.replayable()) return false;
    if (reason !== 'connect' && !(this.idempotent || this.keyed)) return false;
    // A retry needs another server to go to.
    if (this.proxy.table.pick(this.tried) === null) return false;
    return this.proxy.spendRetry();
  }

  retry(reason: 'connect' | 'status' | 'reset'): void {
    this.proxy.metrics.retries.labels(reason).inc();
    void this.start();
  }
}

/**
 * One attempt of an exchange on one server: the undici dispatch handler. A class, not a set of
 * closures, so the hot path allocates one object per attempt.
 */
class Attempt {
  readonly startedAt = performance.now();
  headersAt = 0;
  status: number | null = null;
  superseded = false;
  settled = false;
  resumeUpstream: (() => void) | null = null;

  constructor(
    readonly x: Exchange,
    readonly e: ServerEntry,
  ) {}

  settle(): void {
    if (this.settled) return;
    this.settled = true;
    this.x.proxy.finished(this.e, this.status, this.startedAt, this.headersAt);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.x.abortCurrent = abort;
    if (this.x.res.destroyed) abort(new Error('client went away'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText?: string): boolean {
    if (statusCode < 200) return true; // 1xx: the final response follows
    const x = this.x;
    const e = this.e;
    this.headersAt = performance.now();
    this.status = statusCode;
    if (statusCode >= 500) x.proxy.passiveFailure(e, 1);
    else x.proxy.table.recordSuccess(e);
    if (RETRY_STATUS.has(statusCode) && x.mayRetry('status')) {
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
      const name = rawHeaders[i].toString('latin1');
      if (HOP_BY_HOP.has(name.length < 32 ? name.toLowerCase() : name)) continue;
      out.push(name, rawHeaders[i + 1].toString('latin1'));
    }
    out.push(HEADER.upstream, e.id);
    const res = x.res;
    res.writeHead(statusCode, (x.req.httpVersionMajor < 2 && statusText) || undefined, out);
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
    if (connect) x.proxy.passiveFailure(this.e, 5);
    if (res.destroyed) return;
    x.lastError = code === 'UND_ERR_HEADERS_TIMEOUT' ? BoosterErrors.BOOSTER_ERR_UPSTREAM_TIMEOUT() : BoosterErrors.BOOSTER_ERR_UPSTREAM();
    const reason = connect ? 'connect' : 'reset';
    if (x.mayRetry(reason)) return x.retry(reason);
    x.proxy.logger.warn({ err, server: this.e.id, requestId: x.requestId.value }, 'proxied request failed');
    sendError(res, x.lastError);
  }
}
