import { type Server, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { HEADER } from '../../../common/protocol/headers.js';
import { BoosterErrors } from '../../errors.js';
import { rawAnswer } from '../../replies.js';
import { HeldRequest } from '../request.js';
import { type LlhttpParser, llhttp, methodName as methodNameOf, newParser, releaseParser, STOP_AFTER_HEAD } from './llhttp.js';

/**
 * The lean HTTP/1.1 front (ADR 0014): client connections of the plain booster port are read by
 * Node's llhttp straight from the socket (`parser.consume`, as node:http does), without
 * IncomingMessage/ServerResponse. It serves the common case only: one request at a time per
 * connection, a body that is absent or small enough to hold (Content-Length ≤ the replay limit).
 * Anything else (Upgrade, CONNECT, Expect, Transfer-Encoding, a large body, a pipelined request,
 * the /_booster/ control plane, a request node:http would refuse) hands the connection to
 * node:http at the request boundary, with the request's head re-serialised ahead of the unread
 * bytes, and node:http keeps it. The request and response objects below have the small part of
 * node:http's API the front router and the proxy use, so both paths run the same policy.
 */
export interface LeanFrontOptions {
  /** The front router (gate, role, pressure, proxy): same as node:http's 'request' listener. */
  onRequest: (req: LeanRequest, res: LeanResponse) => void;
  /** Paths node:http must serve (the control plane). */
  handsOver: (url: string) => boolean;
  /** Largest body held in memory; a larger one goes to node:http, which streams it. */
  maxHeldBodyBytes: number;
  keepAliveTimeoutMs: number;
  headersTimeoutMs: number;
  /** Longest time from a request's head to the end of its body (0: none); see OMFLOW_BOOSTER_BODY_TIMEOUT_MS. */
  bodyTimeoutMs: number;
}

let dateCache = '';
let dateAt = 0;
function httpDate(): string {
  const now = Date.now();
  if (now - dateAt >= 1000) {
    dateAt = now - (now % 1000);
    dateCache = new Date(now).toUTCString();
  }
  return dateCache;
}

const BAD_REQUEST = 'HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';
const HEADERS_TOO_LARGE = 'HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';
const REQUEST_TIMEOUT = 'HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';
/** A body still arriving after OMFLOW_BOOSTER_BODY_TIMEOUT_MS: the same answer the proxy gives on the node:http path. */
const BODY_TIMEOUT = rawAnswer(BoosterErrors.BOOSTER_ERR_BODY_TIMEOUT());
/** A request line that is not HTTP/1.x: the front router's answer. */
const HTTP_VERSION = rawAnswer(BoosterErrors.BOOSTER_ERR_HTTP_VERSION());

/** The request as the front router and the proxy see it (the node:http names they read). */
export class LeanRequest extends HeldRequest {
  readonly httpVersionMajor = 1;
  readonly readableDidRead = false;
  #headers: Record<string, string> | null = null;

  constructor(
    readonly socket: Socket,
    readonly method: string,
    readonly url: string,
    readonly httpVersionMinor: number,
    readonly rawHeaders: string[],
    /** Found by the one pass over the head that decides the path (admission and retries read it). */
    readonly idempotencyKey: string | undefined,
  ) {
    super();
  }

  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  /** Lower-cased names; repeats joined with ", " (only built when read). */
  get headers(): Record<string, string> {
    if (this.#headers === null) {
      const h: Record<string, string> = Object.create(null);
      const raw = this.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i].toLowerCase();
        h[name] = h[name] === undefined ? raw[i + 1] : `${h[name]}, ${raw[i + 1]}`;
      }
      this.#headers = h;
    }
    return this.#headers;
  }
}

function flushLater(res: LeanResponse): void {
  res.flushHead();
}

/** Above this, a chunk is not copied to join the head: two writes instead. */
const JOIN_LIMIT = 16 * 1024;

type Listener = () => void;

/**
 * The response: framed by us (Content-Length as given, else chunked, else close for HTTP/1.0).
 * Its 'close' and 'drain' events are the two the proxy listens to; no EventEmitter per request.
 */
export class LeanResponse {
  headersSent = false;
  writableFinished = false;
  destroyed = false;
  statusCode = 200;
  #chunked = false;
  #noBody: boolean;
  #close = false;
  /** The head, until the first body bytes join it in one write (or the next tick sends it alone). */
  #pendingHead: string | null = null;
  #onClose: Listener[] | null = null;
  #onDrain: Listener[] | null = null;

  constructor(
    readonly conn: LeanConnection,
    readonly req: LeanRequest,
    keepAlive: boolean,
  ) {
    this.#noBody = req.method === 'HEAD';
    this.#close = !keepAlive;
  }

  on(event: 'close' | 'drain', fn: Listener): this {
    if (event === 'close') (this.#onClose ??= []).push(fn);
    else if (event === 'drain') (this.#onDrain ??= []).push(fn);
    return this;
  }

  emit(event: 'close' | 'drain'): void {
    const list = event === 'close' ? this.#onClose : this.#onDrain;
    if (list) for (const fn of list) fn.call(this);
  }

  /** Only `connection: close` is meaningful here (the front router's graceful-stop hint). */
  setHeader(name: string, value: string): this {
    if (name.toLowerCase() === 'connection' && value.toLowerCase() === 'close') this.#close = true;
    return this;
  }

  writeHead(
    status: number,
    reasonOrHeaders?: string | Record<string, string | number> | string[],
    maybeHeaders?: string[] | Record<string, string | number>,
  ): this {
    if (this.headersSent || this.destroyed) return this;
    this.headersSent = true;
    this.statusCode = status;
    const reason = typeof reasonOrHeaders === 'string' ? reasonOrHeaders : (STATUS_CODES[status] ?? '');
    const given = typeof reasonOrHeaders === 'object' ? reasonOrHeaders : maybeHeaders;
    let head = `HTTP/1.1 ${status} ${reason}\r\n`;
    let hasLength = false;
    let hasDate = false;
    // One flat name/value list either way (the proxy passes one; error answers pass an object).
    const list: (string | number)[] = Array.isArray(given) ? given : given ? Object.entries(given).flat() : [];
    for (let i = 0; i < list.length; i += 2) {
      const name = String(list[i]);
      const value = list[i + 1];
      if (name.length === 14 && name.toLowerCase() === 'content-length') hasLength = true;
      else if (name.length === 4 && name.toLowerCase() === 'date') hasDate = true;
      else if (name.length === 10 && name.toLowerCase() === 'connection') {
        if (String(value).toLowerCase() === 'close') this.#close = true;
        continue;
      }
      head += `${name}: ${value}\r\n`;
    }
    if (status === 204 || status === 304 || status < 200) this.#noBody = true;
    if (!hasLength && !this.#noBody) {
      if (this.req.httpVersionMinor === 0)
        this.#close = true; // HTTP/1.0 without a length: the body ends with the connection
      else {
        this.#chunked = true;
        head += 'transfer-encoding: chunked\r\n';
      }
    }
    if (this.#close) head += 'connection: close\r\n';
    else if (this.req.httpVersionMinor === 0) head += 'connection: keep-alive\r\n';
    if (!hasDate) head += `date: ${httpDate()}\r\n`;
    head += '\r\n';
    // The head waits for the first body chunk, so both leave in one write (as node:http does with
    // cork); an answer whose body comes later (SSE) gets its head on the next tick.
    this.#pendingHead = head;
    process.nextTick(flushLater, this);
    return this;
  }

  flushHead(): void {
    const head = this.#pendingHead;
    if (head === null) return;
    this.#pendingHead = null;
    if (!this.destroyed) this.conn.socket.write(head, 'latin1');
  }

  /** One write of [pending head] + prefix + chunk + suffix (prefix and suffix are chunk framing). */
  #send(prefix: string, chunk: Buffer | string | null, suffix: string): boolean {
    const s = this.conn.socket;
    const head = this.#pendingHead;
    this.#pendingHead = null;
    const pre = head === null ? prefix : head + prefix;
    if (chunk === null || chunk.length === 0) return pre.length + suffix.length === 0 ? true : s.write(pre + suffix, 'latin1');
    const body = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (pre.length === 0 && suffix.length === 0) return s.write(body);
    if (body.length > JOIN_LIMIT) {
      s.cork();
      s.write(pre, 'latin1');
      s.write(body);
      const ok = suffix.length === 0 ? true : s.write(suffix, 'latin1');
      s.uncork();
      return ok && s.writableLength < s.writableHighWaterMark;
    }
    // Header bytes are latin1: one byte per character.
    const out = Buffer.allocUnsafe(pre.length + body.length + suffix.length);
    out.write(pre, 0, 'latin1');
    body.copy(out, pre.length);
    if (suffix.length > 0) out.write(suffix, pre.length + body.length, 'latin1');
    return s.write(out);
  }

  write(chunk: Buffer | string): boolean {
    if (this.destroyed || this.writableFinished) return false;
    if (!this.headersSent) this.writeHead(this.statusCode);
    if (this.#noBody || chunk.length === 0) return true;
    if (!this.#chunked) return this.#send('', chunk, '');
    return this.#send(`${Buffer.byteLength(chunk).toString(16)}\r\n`, chunk, '\r\n');
  }

  end(chunk?: Buffer | string): this {
    if (this.destroyed || this.writableFinished) return this;
    if (chunk !== undefined && chunk.length > 0) {
      if (!this.headersSent) this.writeHead(this.statusCode);
      if (this.#noBody) this.#send('', null, '');
      else if (this.#chunked) this.#send(`${Buffer.byteLength(chunk).toString(16)}\r\n`, chunk, '\r\n0\r\n\r\n');
      else this.#send('', chunk, '');
    } else {
      if (!this.headersSent) this.writeHead(this.statusCode);
      this.#send(this.#chunked ? '0\r\n\r\n' : '', null, '');
    }
    this.writableFinished = true;
    this.conn.responseDone(this, this.#close);
    this.emit('close');
    return this;
  }

  /** The client sees the connection cut (the answer cannot be finished). */
  destroy(_err?: Error): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.#pendingHead = null;
    this.conn.socket.destroy();
    return this;
  }

  /** The connection went away under this response. */
  gone(): void {
    if (this.writableFinished) return;
    this.destroyed = true;
    this.emit('close');
  }
}

type NodeSocket = Socket & { _handle?: { _consumed?: boolean } | null; _unrefTimer?: () => void };

/** A request head that node:http serves instead, waiting for the connection's current answer. */
interface HandOver {
  head: string;
  rest: Buffer | null;
}

/** One client connection on the lean path. */
export class LeanConnection {
  readonly parser: LlhttpParser;
  /** The request being answered (one at a time). */
  current: LeanResponse | null = null;
  /** The request whose body is being read. */
  #reading: { req: LeanRequest; res: LeanResponse; chunks: Buffer[] } | null = null;
  #handOver: HandOver | null = null;
  /** The head just parsed is refused (400) once the parser returns: why. */
  #refused: string | null = null;
  /** A parse error while an answer was under way: sent once that answer is complete, then the connection closes. */
  #refusal: string | null = null;
  #headers: string[] = [];
  #url = '';
  #ended = false;
  #parserReleased = false;
  /** When the head of the next request began arriving (0: not begun); for the headers timeout. */
  headBegunAt = 0;
  /** When the head of the request whose body is being read was complete (0: none); for the body timeout. */
  bodyBegunAt = 0;
  idleSince = Date.now();

  constructor(
    readonly socket: NodeSocket,
    readonly front: LeanFront,
  ) {
    const b = llhttp!;
    const P = b.HTTPParser;
    const p = newParser(b, P.REQUEST);
    this.parser = p;
    p[P.kOnMessageBegin] = () => {
      this.headBegunAt = Date.now();
    };
    p[P.kOnHeaders] = (h: string[], url: string) => {
      for (let i = 0; i < h.length; i++) this.#headers.push(h[i]);
      this.#url += url;
    };
    p[P.kOnHeadersComplete] = this.#onHeadersComplete;
    p[P.kOnBody] = (chunk: Buffer) => this.#reading?.chunks.push(chunk);
    p[P.kOnMessageComplete] = this.#onMessageComplete;
    p[P.kOnExecute] = this.#onExecute;
    socket.setNoDelay(true);
    socket.on('drain', () => this.current?.emit('drain'));
    socket.on('end', this.#onEnd);
    socket.on('error', () => socket.destroy());
    socket.on('close', this.#onClose);
    socket.on('timeout', () => socket.destroy());
    p.consume(socket._handle);
  }

  /** No request in progress: graceful stop and the keep-alive timeout may close it. */
  get idle(): boolean {
    return this.current === null && this.#reading === null && this.headBegunAt === 0 && this.#handOver === null;
  }

  readonly #onHeadersComplete = (
    major: number,
    minor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    _status: number,
    _statusText: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number => {
    const h = headers ?? this.#headers;
    const u = url ?? this.#url;
    this.#headers = [];
    this.#url = '';
    this.headBegunAt = 0;
    const methodName = methodNameOf(llhttp!, method);
    if (methodName === undefined) {
      // A method llhttp parses but this Node cannot name: never guessed.
      this.#refused = 'unknown method';
      return STOP_AFTER_HEAD;
    }
    // One pass over the head: Host count, whether the body can be held, the Idempotency-Key.
    const maxHeld = this.front.options.maxHeldBodyBytes;
    let hosts = 0;
    let holdable = true;
    let idempotencyKey: string | undefined;
    for (let i = 0; i < h.length; i += 2) {
      const n = h[i].length;
      if (n !== 4 && n !== 6 && n !== 14 && n !== 15 && n !== 17) continue;
      const name = h[i].toLowerCase();
      if (name === 'host') hosts++;
      else if (name === 'expect' || name === 'transfer-encoding') holdable = false;
      else if (name === 'content-length') holdable &&= Number(h[i + 1]) <= maxHeld;
      else if (name === HEADER.idempotencyKey) idempotencyKey ??= h[i + 1];
    }
    // CONNECT goes to node:http whatever else it says (it has no 'connect' listener: it closes the connection).
    const connect = methodName === 'CONNECT';
    if (major !== 1 && !connect) {
      // HTTP/0.9 or a line claiming 2.0: refused here as the front router refuses it (a head
      // re-serialised for node:http would no longer be the request the client sent).
      this.#refused = major === 0 ? 'HTTP/0.9' : 'version';
      return STOP_AFTER_HEAD;
    }
    if (!connect && (hosts > 1 || (minor === 1 && hosts === 0))) {
      // RFC 9112 §3.2: exactly one Host on HTTP/1.1, never two on any request (the front router
      // holds node:http's path to the same rule); nothing after a refused head is read.
      this.#refused = 'Host header missing or repeated';
      return STOP_AFTER_HEAD;
    }
    // The common case stays: no Expect/Transfer-Encoding, a body small enough to hold, an
    // origin-form path outside the control plane, one request at a time.
    const lean =
      holdable && this.current === null && !upgrade && major === 1 && u.charCodeAt(0) === 47 /* '/' */ && !connect && !this.front.options.handsOver(u);
    if (!lean) {
      let head = `${methodName} ${u} HTTP/${major}.${minor}\r\n`;
      for (let i = 0; i < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
      this.#handOver = { head: `${head}\r\n`, rest: null };
      return STOP_AFTER_HEAD;
    }
    const req = new LeanRequest(this.socket, methodName, u, minor, h, idempotencyKey);
    const res = new LeanResponse(this, req, keepAlive);
    this.#reading = { req, res, chunks: [] };
    this.bodyBegunAt = Date.now();
    return 0;
  };

  readonly #onMessageComplete = (): void => {
    const r = this.#reading;
    if (r === null) return;
    this.#reading = null;
    this.bodyBegunAt = 0;
    const c = r.chunks;
    r.req.heldBody = c.length === 0 ? null : c.length === 1 ? c[0] : Buffer.concat(c);
    this.current = r.res;
    this.front.options.onRequest(r.req, r.res);
  };

  readonly #onExecute = (ret: number | Error): void => {
    this.socket._unrefTimer?.(); // reads bypass the socket's stream, so its idle timer would not see them
    if (ret instanceof Error) {
      this.#badRequest(ret);
      return;
    }
    if (this.#refused !== null) {
      this.#badRequest(Object.assign(new Error(this.#refused), { code: 'HPE_REFUSED' }));
      return;
    }
    if (this.#handOver !== null && this.#handOver.rest === null) {
      const buf = this.parser.getCurrentBuffer();
      this.#handOver.rest = buf.subarray(ret);
      // Stop reading until node:http takes over: what arrives meanwhile waits in the socket's buffer.
      this.parser.unconsume();
      this.socket.pause();
      if (this.current === null) this.#giveToNodeHttp();
    }
  };

  /** Everything after the current request goes to node:http, which keeps the connection. */
  #giveToNodeHttp(): void {
    const h = this.#handOver!;
    this.#handOver = null;
    this.#detach();
    this.#releaseParser(); // node:http reads the rest with a parser of its own
    const s = this.socket;
    if (s._handle) s._handle._consumed = true; // node:http reads through the stream (it sees the bytes put back)
    const bytes = h.rest && h.rest.length > 0 ? Buffer.concat([Buffer.from(h.head, 'latin1'), h.rest]) : Buffer.from(h.head, 'latin1');
    if (this.#ended) {
      // The client half-closed behind its pipelined requests: the stream has ended, so nothing can be
      // put back in it. node:http gets the bytes and the end as its own listeners would have.
      this.front.handToNodeHttp(s);
      s.emit('data', bytes);
      s.emit('end');
      return;
    }
    s.unshift(bytes);
    this.front.handToNodeHttp(s);
    process.nextTick(() => s.resume());
  }

  /** Once the lean path is done with the connection (closed or handed over): see releaseParser. */
  #releaseParser(): void {
    if (this.#parserReleased) return;
    this.#parserReleased = true;
    releaseParser(this.parser);
  }

  #detach(): void {
    this.front.forget(this);
    const s = this.socket;
    s.removeAllListeners('drain');
    s.removeListener('end', this.#onEnd);
    s.removeAllListeners('error');
    s.removeListener('close', this.#onClose);
    s.removeAllListeners('timeout');
    s.setTimeout(0);
  }

  /** The current answer is complete: next request, hand-over, or close. */
  responseDone(res: LeanResponse, close: boolean): void {
    if (this.current !== res) return;
    this.current = null;
    this.idleSince = Date.now();
    if (this.#refusal !== null) {
      // Reading again (what comes is discarded) lets the socket see its client go away.
      this.socket.resume();
      this.socket.end(this.#refusal);
      return;
    }
    if (close || (this.#ended && !this.#handOver?.rest)) {
      this.socket.end();
      return;
    }
    if (this.#handOver?.rest) this.#giveToNodeHttp();
  }

  /**
   * A head or body the parser refuses: 400 (431 for a head too large) and the connection closes;
   * nothing after it is read. An answer already under way for an earlier request is finished first
   * (the request was complete and valid, and may be with a server already), as node:http does.
   */
  #badRequest(err: Error & { code?: string }): void {
    const s = this.socket;
    this.#reading = null;
    this.bodyBegunAt = 0;
    this.#handOver = null;
    // HTTP/0.9 has no status line to carry an answer: the connection just closes.
    const answer =
      err.code === 'HPE_HEADER_OVERFLOW' ? HEADERS_TOO_LARGE : err.message === 'version' ? HTTP_VERSION : err.message === 'HTTP/0.9' ? '' : BAD_REQUEST;
    if (this.current === null) {
      // Nothing after the refused head is parsed: what the client still sends (its body, a
      // pipelined request) is read and discarded, so the socket sees its client go away.
      this.parser.unconsume();
      if (s.writable && answer) {
        s.resume();
        s.end(answer);
      } else s.destroy();
      return;
    }
    this.#refusal ??= answer;
    this.parser.unconsume();
    s.pause();
  }

  /** The head of a request took longer than the headers timeout (slow-loris): 408, as node:http. */
  timedOutHead(): void {
    if (this.socket.writable) this.socket.end(REQUEST_TIMEOUT);
    this.socket.destroy();
  }

  /** The body of a request took longer than the body timeout (it trickles): 408 with the code, and close. */
  timedOutBody(): void {
    this.#reading = null;
    this.bodyBegunAt = 0;
    this.parser.unconsume();
    if (this.socket.writable) this.socket.end(BODY_TIMEOUT);
    this.socket.destroy();
  }

  readonly #onEnd = (): void => {
    this.#ended = true;
    // A half-closed client still gets the answers to its complete requests, those waiting behind
    // the current answer for node:http too (handed over when it is done); a request of which only
    // part came is dropped.
    if (this.#reading !== null || (this.#handOver !== null && this.current === null)) this.socket.destroy();
    else if (this.current === null) this.socket.end();
    else if (this.#handOver?.rest == null) this.#handOver = null;
  };

  readonly #onClose = (): void => {
    this.front.forget(this);
    this.#releaseParser();
    this.#reading = null;
    const c = this.current;
    this.current = null;
    c?.gone();
  };
}

/** The lean front of one node:http server: its connections, their timeouts, the hand-over. */
export class LeanFront {
  readonly #conns = new Set<LeanConnection>();
  #sweep: NodeJS.Timeout | null = null;

  constructor(
    readonly options: LeanFrontOptions,
    readonly handToNodeHttp: (socket: Socket) => void,
  ) {}

  accept(socket: Socket): void {
    const c = new LeanConnection(socket, this);
    this.#conns.add(c);
    this.#sweep ??= setInterval(() => this.#check(), Math.max(10, Math.min(1000, Math.floor(this.options.keepAliveTimeoutMs / 4)))).unref();
  }

  forget(c: LeanConnection): void {
    this.#conns.delete(c);
    if (this.#conns.size === 0 && this.#sweep) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
  }

  get connections(): number {
    return this.#conns.size;
  }

  /** Keep-alive and headers timeouts of every connection in one pass (no timer per request). */
  #check(): void {
    const now = Date.now();
    const o = this.options;
    for (const c of this.#conns) {
      if (c.headBegunAt !== 0 && c.current === null) {
        if (now - c.headBegunAt >= o.headersTimeoutMs) c.timedOutHead();
      } else if (c.bodyBegunAt !== 0) {
        if (o.bodyTimeoutMs > 0 && now - c.bodyBegunAt >= o.bodyTimeoutMs) c.timedOutBody();
      } else if (c.idle && now - c.idleSince >= o.keepAliveTimeoutMs) c.socket.destroy();
    }
  }

  closeIdle(): void {
    for (const c of this.#conns) if (c.idle) c.socket.destroy();
  }

  closeAll(): void {
    for (const c of this.#conns) c.socket.destroy();
  }
}

/**
 * Puts the lean front in front of a plain node:http server: new connections go to the lean
 * path, handed-over ones to node:http's own connection listener; closing idle or all
 * connections reaches both.
 */
export function attachLeanFront(server: Server, options: LeanFrontOptions): LeanFront {
  const nodeHttpConnection = server.listeners('connection')[0] as (s: Socket) => void;
  server.removeAllListeners('connection');
  const front = new LeanFront(options, (s) => nodeHttpConnection.call(server, s));
  server.on('connection', (s: Socket) => {
    if (server.timeout) s.setTimeout(server.timeout);
    front.accept(s);
  });
  const closeIdle = server.closeIdleConnections.bind(server);
  const closeAll = server.closeAllConnections.bind(server);
  server.closeIdleConnections = () => {
    closeIdle();
    front.closeIdle();
  };
  server.closeAllConnections = () => {
    closeAll();
    front.closeAll();
  };
  return front;
}
