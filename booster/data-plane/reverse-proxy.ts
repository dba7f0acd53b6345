import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { type Duplex, type Readable, Transform, type TransformCallback } from 'node:stream';
import type { OmflowError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { HEADER } from '../../common/protocol/headers.js';
import { formatTraceParent, parseTraceParent, startTrace, TRACEPARENT, TRACESTATE } from '../../common/protocol/trace-context.js';
import { BoosterErrors } from '../errors.js';
import type { BoosterMetrics } from '../metrics.js';
import { answerError, nextRequestId, refuseUpgrade, UPGRADE_UNAVAILABLE } from '../replies.js';
import type { ServerTable, ServerView } from '../server-table/server-table.js';
import { type AccessLog, type AccessRecord, OwnAnswer } from './access-log.js';
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
  /** Longest time from the head to the end of a request body read here (0: none). */
  bodyTimeoutMs: number;
  /** Largest request body passed on (0: none). */
  maxBodyBytes: number;
}

export interface ReverseProxyDeps {
  table: ServerTable;
  admission: Admission;
  pools: UpstreamPools;
  metrics: BoosterMetrics;
  log: Logger;
  access: AccessLog;
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
  readonly access: AccessLog;
  readonly epoch: () => number;
  /** The settings object, read at each use: a reload changes it in place. */
  readonly opts: ReverseProxyOptions;
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
  if (x.s.access.on) {
    const now = performance.now();
    x.s.access.record(x, this.headersSent ? this.statusCode : 0, now - x.startedAt, now);
  }
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

/** The value of a response header (lower-case `name`), or null; only looked for on the rare answers that may carry it. */
function headerOf(rawHeaders: RawHeader[], name: string): string | null {
  for (let i = 0; i < rawHeaders.length; i += 2)
    if (rawHeaders[i].length === name.length && latin1(rawHeaders[i]).toLowerCase() === name) return latin1(rawHeaders[i + 1]);
  return null;
}

/** An app server's 503 that blames the database (HEADER.dbUnavailable); only looked for on a 503. */
function hasDbUnavailable(rawHeaders: RawHeader[]): boolean {
  return headerOf(rawHeaders, HEADER.dbUnavailable) !== null;
}

/** A passive failure: the table decides on ejection, the metrics count it. */
function passiveFailure(s: Shared, e: ServerView, weight: number): void {
  if (s.table.recordFailure(e, weight)) s.metrics.ejections.labels(e.id).inc();
}

export class ReverseProxy {
  readonly #s: Shared;

  constructor(d: ReverseProxyDeps) {
    this.#s = {
      table: d.table,
      admission: d.admission,
      pools: d.pools,
      metrics: d.metrics,
      log: d.log,
      access: d.access,
      epoch: d.epoch,
      opts: d.opts,
      counter: new RequestCounter(),
    };
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
    const max = this.#s.opts.maxBodyBytes;
    if (max > 0 && (req instanceof HeldRequest ? (req.heldBody?.length ?? 0) : Number(req.headers['content-length'] ?? 0)) > max) {
      const err = BoosterErrors.BOOSTER_ERR_BODY_TOO_LARGE();
      const bytes = refuseBody(req, res, err);
      if (this.#s.access.on) this.#s.access.record(new OwnAnswer(req, this.#s.epoch(), err.code, bytes), res.headersSent ? err.status : 0, 0);
      return;
    }
    this.#s.counter.active++;
    const method = req.method ?? 'GET';
    if (req instanceof HeldRequest) {
      // The lean front read the whole (small) body already.
      const x = new Exchange(this.#s, req, res, method, req.heldBody === null ? 'none' : 'buffer');
      x.body = req.heldBody;
      x.bytesIn = req.heldBody?.length ?? 0;
      (res as TaggedResponse)[EXCHANGE] = x;
      res.on('close', onResponseClose);
      x.run();
      return;
    }
    const mode = bodyModeOf(req, this.#s.opts.replayableBodyBytes);
    const x = new Exchange(this.#s, req, res, method, mode);
    (res as TaggedResponse)[EXCHANGE] = x;
    res.on('close', onResponseClose);
    if (mode === 'none') {
      // HTTP/2: a client may reset a stream in the very read that opened it (rapid reset,
      // CVE-2023-44487); the reset is seen before the next turn, and such a request never reaches a server.
      if (req.httpVersionMajor === 2) setImmediate(runUnlessGone, x);
      else x.run();
      return;
    }
    this.#limitBody(x);
    this.#holdThenRun(x);
  }

  /**
   * A request takes a server slot only once its body shows up: all of it when it is small (then it
   * is held, and a retry can resend it), or its first replayableBodyBytes, after which the rest
   * streams. A body that never comes (an HTTP/2 stream or chunked upload that opens and waits)
   * holds no slot, whatever the client does, until the body timeout ends it.
   */
  #holdThenRun(x: Exchange): void {
    const req = x.req;
    const limit = this.#s.opts.replayableBodyBytes;
    const chunks: Buffer[] = [];
    let held = 0;
    const onData = (c: Buffer) => {
      chunks.push(c);
      held += c.length;
      if (x.maxStreamedBytes > 0 && held > x.maxStreamedBytes) {
        req.off('data', onData);
        req.off('end', onEnd);
        x.refuse(BoosterErrors.BOOSTER_ERR_BODY_TOO_LARGE());
      } else if (held > limit) done(false);
    };
    const onEnd = () => done(true);
    function done(ended: boolean): void {
      req.off('data', onData);
      req.off('end', onEnd);
      if (x.refused) return;
      if (ended) {
        x.mode = 'buffer';
        x.body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
        x.bytesIn = x.body.length;
      } else {
        req.pause();
        x.heldPrefix = chunks;
      }
      x.run();
    }
    req.on('data', onData);
    req.once('end', onEnd);
    req.on('error', () => x.res.destroy());
  }

  /**
   * Whole-request limits on a body read through node:http (HTTP/1.1 and HTTP/2; the lean path
   * bounds its held bodies itself): all of it within the body timeout, however slowly it
   * trickles, and no more of it than the maximum when no Content-Length said so up front.
   * Either ends the exchange: an attempt under way is aborted, the client gets 408 or 413.
   */
  #limitBody(x: Exchange): void {
    const req = x.req;
    const max = this.#s.opts.maxBodyBytes;
    const ms = this.#s.opts.bodyTimeoutMs;
    if (ms === 0 && max === 0) return;
    if (ms > 0) {
      const timer = setTimeout(() => x.refuse(BoosterErrors.BOOSTER_ERR_BODY_TIMEOUT()), ms);
      x.stopTimer = () => clearTimeout(timer);
      req.once('end', x.stopTimer);
      req.once('close', x.stopTimer);
    }
    // Without a Content-Length (chunked, or HTTP/2) the size shows only as the body streams.
    if (max > 0 && x.mode === 'stream' && req.headers['content-length'] === undefined) x.maxStreamedBytes = max;
  }

  /** WebSocket (and any Upgrade): a raw TCP tunnel after the request head. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const s = this.#s;
    const choice = s.table.pick();
    if (choice.kind !== 'server') {
      refuseUpgrade(socket, UPGRADE_UNAVAILABLE);
      return;
    }
    const e = choice.server;
    const { origin } = s.pools.get(e);
    const tunnel = new Tunnel(req, e.id, s.epoch());
    const headers = buildUpstreamHeaders(req, tunnel, tunnel.epoch, true);
    const up: Socket = netConnect({ host: origin.hostname, port: Number(origin.port || 80) });
    if (s.access.on) tunnel.logOnClose(s.access, up);
    const fail = () => {
      socket.destroy();
      up.destroy();
    };
    up.setTimeout(s.opts.connectTimeoutMs, () => {
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

/** A WebSocket (or any Upgrade) tunnel as the access log sees it: one line when the upstream side closes. */
class Tunnel implements AccessRecord, RequestIds {
  requestId = '';
  traceId = '';
  readonly attempts = 1;
  readonly retries = null;
  readonly queueMs = 0;
  connectMs: number | null = null;
  readonly headersMs = null;
  bytesIn = 0;
  bytesOut = 0;
  readonly code = null;
  /** The status line of the server's answer to the upgrade (101 when it switched). */
  status = 0;
  readonly startedAt = performance.now();

  constructor(
    readonly req: IncomingMessage,
    readonly server: string,
    readonly epoch: number,
  ) {}

  logOnClose(access: AccessLog, up: Socket): void {
    up.once('connect', () => {
      this.connectMs = performance.now() - this.startedAt;
    });
    up.once('data', (d: Buffer) => {
      this.status = Number(d.toString('latin1', 9, 12)) || 0;
    });
    up.once('close', () => {
      // The bytes through the tunnel each way, the heads included.
      this.bytesIn = up.bytesWritten;
      this.bytesOut = up.bytesRead;
      const now = performance.now();
      access.record(this, this.status, now - this.startedAt, now);
    });
  }
}

/** The ids of a request, found or made while its upstream headers are built. */
interface RequestIds {
  requestId: string;
  traceId: string;
}

/**
 * Upstream request headers: hop-by-hop stripped, forwarding headers and the epoch set, the
 * X-Request-ID and the W3C trace context kept or started. A valid `traceparent` passes through
 * unchanged with its `tracestate` (the booster records no span of its own: the spec's
 * alternative processing for a proxy); a missing, repeated or invalid one is replaced by a new
 * trace, and a `tracestate` without a valid `traceparent` is dropped, as the spec requires.
 */
function buildUpstreamHeaders(req: IncomingMessage, ids: RequestIds, epoch: number, keepUpgrade = false): string[] {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let xff: string | undefined;
  let host: string | undefined;
  let extraHop: Set<string> | null = null;
  let traceparent: string | undefined;
  let traceparents = 0;
  let tracestate: string[] | null = null;
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
        ids.requestId = raw[i + 1];
        continue;
      case TRACEPARENT:
        traceparent = raw[i + 1];
        traceparents++;
        continue;
      case TRACESTATE:
        (tracestate ??= []).push(raw[i + 1]);
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
  if (!ids.requestId) ids.requestId = nextRequestId();
  const trace = traceparents === 1 ? parseTraceParent(traceparent) : null;
  if (trace) {
    ids.traceId = trace.traceId;
    out.push(TRACEPARENT, traceparent!);
    if (tracestate) for (const v of tracestate) out.push(TRACESTATE, v);
  } else {
    const started = startTrace();
    ids.traceId = started.traceId;
    out.push(TRACEPARENT, formatTraceParent(started));
  }
  out.push(
    'x-forwarded-for',
    xff ? `${xff}, ${remote}` : remote,
    'x-forwarded-proto',
    (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
    'x-request-id',
    ids.requestId,
    HEADER.epoch,
    String(epoch),
  );
  if (host) out.push('x-forwarded-host', host);
  if (host && req.httpVersionMajor === 2 && req.headers.host === undefined) out.push('host', host);
  return out;
}

/**
 * A request body the booster will not pass on: 408 or 413 with its code if no answer started,
 * else the answer is cut (the body's length is returned for the access log, 0 when cut). HTTP/1: the connection closes after it (what is left of the body is
 * never read as a request); HTTP/2: the stream ends, the session goes on.
 */
function refuseBody(req: IncomingMessage | HeldRequest, res: ServerResponse, err: OmflowError): number {
  return answerError(res, err, (req as { httpVersionMajor?: number }).httpVersionMajor === 2 ? undefined : { connection: 'close' });
}

/**
 * A streamed request body on its way to the server: the part held while waiting for the body to
 * show up, then the rest of the request as it comes. Counted when `max` > 0: past it, it ends in
 * an error (the attempt fails) and `onTooLarge` answers the client. It starts reading the request
 * only when the server side first reads it, so until then a retry may still send it.
 */
class StreamedBody extends Transform {
  #bytes = 0;
  started = false;

  constructor(
    readonly prefix: Buffer[],
    readonly source: Readable,
    readonly max: number,
    readonly onTooLarge: () => void,
    readonly onBytes: (chunk: Buffer) => void,
  ) {
    super();
  }

  override _read(size: number): void {
    if (!this.started) {
      this.started = true;
      for (const chunk of this.prefix) this.write(chunk);
      this.source.on('error', (err) => this.destroy(err));
      this.source.pipe(this);
    }
    super._read(size);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.#bytes += chunk.length;
    this.onBytes(chunk);
    if (this.max === 0 || this.#bytes <= this.max) return void done(null, chunk);
    this.onTooLarge();
    done(new Error('request body too large'));
  }
}

/** An HTTP/2 request's exchange, a turn later: not started if the client reset the stream meanwhile. */
function runUnlessGone(x: Exchange): void {
  if ((x.res as { stream?: { destroyed: boolean } }).stream?.destroyed) return;
  x.run();
}

/** One client request across its attempts; what the access log reads of it when it completes. */
class Exchange implements AccessRecord, RequestIds {
  body: Buffer | null = null;
  /** Its body broke a whole-request limit and the client was answered: nothing more is sent or answered. */
  refused = false;
  stopTimer: (() => void) | null = null;
  /** A streamed body is counted on its way to the server and refused past this (0: not counted). */
  maxStreamedBytes = 0;
  /** The part of a streamed body read while waiting for it to show up. */
  heldPrefix: Buffer[] = [];
  #streamBody: StreamedBody | null = null;
  headers: string[];
  /** The epoch the headers carry (a stale-epoch refusal may stamp a newer one). */
  epoch: number;
  readonly tried = new Set<string>();
  requestId = '';
  traceId = '';
  readonly startedAt: number;
  server: string | null = null;
  retries: { server: string; reason: string }[] | null = null;
  queueMs = 0;
  connectMs: number | null = null;
  headersMs: number | null = null;
  bytesIn = 0;
  bytesOut = 0;
  code: string | null = null;
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
    public mode: BodyMode,
  ) {
    this.startedAt = s.access.on ? performance.now() : 0;
    this.epoch = s.epoch();
    this.headers = buildUpstreamHeaders(req, this, this.epoch);
    this.idempotent = IDEMPOTENT.has(method);
    this.keyed = idempotencyKeyOf(req) !== undefined;
    s.admission.earn();
  }

  /** A whole-request limit was broken: the attempt under way is aborted and the client answered 408 or 413. */
  refuse(err: OmflowError): void {
    if (this.refused) return;
    this.refused = true;
    this.stopTimer?.();
    this.abortCurrent?.(new Error(err.code));
    this.code = err.code;
    this.bytesOut = refuseBody(this.req, this.res, err);
  }

  /** The streamed body as sent upstream (see StreamedBody): one per exchange, so a retry before it was read sends the same. */
  streamBody(): Readable {
    this.#streamBody ??= new StreamedBody(
      this.heldPrefix,
      this.req,
      this.maxStreamedBytes,
      () => this.refuse(BoosterErrors.BOOSTER_ERR_BODY_TOO_LARGE()),
      this.countIn,
    );
    return this.#streamBody;
  }

  /** Counts a streamed request body as it is read ('data' listener; bound once per exchange). */
  readonly countIn = (chunk: Buffer): void => {
    this.bytesIn += chunk.length;
  };

  /** Answers with the booster's own error (the access log keeps its code). */
  fail(err: { code: string; status: number; message: string }): void {
    this.code = err.code;
    this.bytesOut = answerError(this.res, err);
  }

  /** A body can be sent again: none, held, or a stream nothing has read yet. */
  replayable(): boolean {
    if (this.mode !== 'stream') return true;
    return !(this.#streamBody?.started ?? false) && !this.req.destroyed;
  }

  /** Starts (or restarts) the exchange; a throw on the way is a defect that answers 500, never an unhandled rejection. */
  run(): void {
    this.start().catch((err: unknown) => {
      this.s.log.error({ err, requestId: this.requestId }, 'proxying a request failed');
      this.abortCurrent?.(err as Error);
      this.fail(BoosterErrors.BOOSTER_ERR_INTERNAL());
    });
  }

  async start(): Promise<void> {
    const s = this.s;
    for (;;) {
      if (this.res.destroyed || this.refused) return;
      const choice = s.table.pick(this.tried);
      if (choice.kind === 'no-server') {
        if (this.tried.size === 0) this.fail(BoosterErrors.BOOSTER_ERR_NO_SERVER());
        else this.fail(this.lastError ?? BoosterErrors.BOOSTER_ERR_UPSTREAM());
        return;
      }
      if (choice.kind === 'no-room') {
        // Woken but beaten to the slot: back to the head of the queue, with the wait left.
        const now = performance.now();
        const again = this.queuedAt !== 0;
        if (!again) this.queuedAt = now;
        const left = s.admission.queueTimeoutMs - (now - this.queuedAt);
        const wait = left > 0 ? s.admission.waitForSlot(left, again, this.queuedAt) : Promise.resolve(false);
        if (wait === null) return this.fail(BoosterErrors.BOOSTER_ERR_OVERLOADED());
        if (!(await wait)) {
          this.queueMs = performance.now() - this.queuedAt;
          return this.fail(BoosterErrors.BOOSTER_ERR_QUEUE_TIMEOUT());
        }
        continue;
      }
      const e = choice.server;
      if (this.queuedAt !== 0) this.queueMs = performance.now() - this.queuedAt;
      this.attempts++;
      this.tried.add(e.id);
      this.server = e.id;
      let up: Upstream;
      try {
        up = s.pools.get(e);
      } catch {
        return this.fail(BoosterErrors.BOOSTER_ERR_NO_SERVER()); // pools closed: the booster is stopping
      }
      const attempt = new Attempt(this, e, s.table.startRequest(e));
      const path = this.req.url ?? '/';
      // A streamed body needs undici; one in memory (or none) takes the lean client when there is one.
      if (this.mode === 'stream') up.pool.dispatch({ method: this.method, path, headers: this.headers, body: this.streamBody() }, attempt);
      else (up.http1 ?? up.pool).dispatch({ method: this.method, path, headers: this.headers, body: this.body }, attempt);
      return;
    }
  }

  /** Decides whether a failed attempt may go to another server (never duplicates a write). */
  mayRetry(reason: 'connect' | 'status' | 'reset'): boolean {
    if (this.responded || this.attempts >= this.s.opts.maxAttempts || !this.replayable()) return false;
    if (reason !== 'connect' && !(this.idempotent || this.keyed)) return false;
    // A retry needs another server to go to.
    if (this.s.table.pick(this.tried).kind === 'no-server') return false;
    return this.s.admission.spendRetry();
  }

  /**
   * The server refused this request's epoch before running anything (409 with HEADER.staleEpoch),
   * and this booster stamps a newer one now that the server accepts: a switchover or a takeover
   * raced the request (the server heard of the new epoch before the request arrived). Stamped
   * anew and sent again once, to any server, outside the retry budget: nothing ran. A booster that
   * still stamps the old epoch (a zombie) gets no second try.
   */
  restampAfterStaleEpoch(rawHeaders: RawHeader[], on: ServerView): boolean {
    if (this.restamped || this.responded || !this.replayable()) return false;
    const highest = Number(headerOf(rawHeaders, HEADER.staleEpoch));
    const now = this.s.epoch();
    if (!(now > this.epoch && now >= highest)) return false;
    this.restamped = true;
    this.epoch = now;
    this.headers[this.headers.indexOf(HEADER.epoch) + 1] = String(now);
    this.tried.delete(on.id);
    this.attempts--;
    return true;
  }

  restamped = false;

  retry(reason: 'connect' | 'status' | 'reset' | 'stale-epoch', from: string): void {
    this.s.metrics.retries.labels(reason).inc();
    (this.retries ??= []).push({ server: from, reason });
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
    // Refused (408/413) before this attempt reached its server: it never starts.
    else if (this.x.refused) abort(new Error('the request body was refused'));
  }

  /** The request (its head, and a held body) is on a connected socket: the end of the connect phase for the access log. */
  onRequestSent(): void {
    if (this.x.connectMs === null && !this.superseded && this.x.s.access.on) this.x.connectMs = performance.now() - this.startedAt;
  }

  onHeaders(statusCode: number, rawHeaders: RawHeader[], resume: () => void, statusText?: string): boolean {
    if (statusCode < 200) return true; // 1xx: the final response follows
    const x = this.x;
    if (x.refused) {
      this.superseded = true;
      this.settle();
      x.abortCurrent?.(new Error('the request body was refused'));
      return false;
    }
    const e = this.e;
    this.headersAt = performance.now();
    this.status = statusCode;
    // The server has done its work: its adaptive limit learns the time, and a queued request may take the slot.
    if (x.s.table.headersReceived(e, this.headersAt - this.startedAt, this.pendingAtSend)) x.s.admission.release();
    if (statusCode === 409 && x.restampAfterStaleEpoch(rawHeaders, e)) return this.supersede('stale-epoch', 'sending again with the new epoch');
    // The server's database is unreachable: every server shares it, so this is neither the
    // server's fault (no passive failure, no ejection) nor worth a retry elsewhere (same answer, more load).
    const dbDown = statusCode === 503 && hasDbUnavailable(rawHeaders);
    if (statusCode >= 500) {
      if (!dbDown) passiveFailure(x.s, e, 1);
    } else x.s.table.recordSuccess(e);
    if (RETRY_STATUS.has(statusCode) && !dbDown && x.mayRetry('status')) return this.supersede('status', 'retrying on another server');
    x.responded = true;
    x.answering = this;
    x.headersMs = this.headersAt - this.startedAt;
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
      x.s.log.warn({ err, server: e.id, requestId: x.requestId }, 'the server answered a head that cannot be relayed');
      this.superseded = true;
      this.settle();
      x.abortCurrent?.(err as Error);
      x.fail(BoosterErrors.BOOSTER_ERR_UPSTREAM());
      return false;
    }
    res.on('drain', onResponseDrain);
    return true;
  }

  /** Gives this attempt up (its slot freed, its upstream request aborted) and runs the exchange again. */
  supersede(reason: 'status' | 'stale-epoch', why: string): false {
    const abort = this.x.abortCurrent;
    this.superseded = true;
    this.settle();
    abort?.(new Error(why));
    this.x.connectMs = null;
    this.x.retry(reason, this.e.id);
    return false;
  }

  onData(chunk: Buffer): boolean {
    if (this.superseded) return true;
    this.x.bytesOut += chunk.length;
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
    if (this.x.refused) return; // answered already (408/413)
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
      x.connectMs = null;
      x.retry(reason, this.e.id);
      return;
    }
    x.s.log.warn({ err, server: this.e.id, requestId: x.requestId }, 'proxied request failed');
    x.fail(x.lastError);
  }
}
