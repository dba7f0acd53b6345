import { connect, type Socket } from 'node:net';
import { type LlhttpParser, llhttp, newParser, releaseParser, SKIP_BODY } from './llhttp.js';

/**
 * A lean HTTP/1.1 client pool for one app server: raw keep-alive sockets and Node's llhttp, one
 * request per socket at a time (no pipelining: a slow answer must not hold the ones behind it).
 * It speaks undici's dispatch-handler protocol (onConnect, onHeaders, onData, onComplete,
 * onError), so the proxy's attempts run on it or on undici unchanged. Used for requests whose
 * body is already in memory (none, or held for replay); streamed bodies stay on undici.
 * Timeouts and error codes are undici's: UND_ERR_CONNECT_TIMEOUT, UND_ERR_HEADERS_TIMEOUT,
 * UND_ERR_BODY_TIMEOUT, UND_ERR_SOCKET.
 */
export interface Http1Handler {
  onConnect(abort: (err?: Error) => void): void;
  /** The request went out on a connected socket (undici's name for it; optional there too). */
  onRequestSent?(): void;
  onHeaders(statusCode: number, rawHeaders: string[], resume: () => void, statusText: string): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: null): void;
  onError(err: Error): void;
}

/** Timeouts and the connection limit of one server's pool: the same figures as its undici pool. */
export interface Http1PoolOptions {
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  keepAliveMs: number;
  connectionsPerServer: number;
}

export interface Http1RequestOptions {
  method: string;
  path: string;
  /** Flat name/value list, already stripped of hop-by-hop headers. */
  headers: string[];
  body: Buffer | null;
}

function codedError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** One request on its way through the pool. */
class PooledRequest {
  conn: UpConn | null = null;
  done = false;
  /** When the request was written (headers timeout) or its last body byte came (body timeout). */
  since = 0;
  headersSeen = false;
  interim = false;
  abort(err?: Error): void {
    if (this.done) return;
    const c = this.conn;
    if (c) c.fail(err ?? codedError('UND_ERR_ABORTED', 'Request aborted'));
    else {
      this.pool.unqueue(this);
      this.finishWithError(err ?? codedError('UND_ERR_ABORTED', 'Request aborted'));
    }
  }

  constructor(
    readonly pool: Http1Pool,
    readonly opts: Http1RequestOptions,
    readonly handler: Http1Handler,
  ) {}

  finishWithError(err: Error): void {
    if (this.done) return;
    this.done = true;
    this.conn = null;
    this.handler.onError(err);
  }
}

/** One keep-alive socket to the server with a response parser. */
class UpConn {
  readonly socket: Socket;
  readonly parser: LlhttpParser;
  req: PooledRequest | null = null;
  dead = false;
  /** The server asked to close, or answered HTTP/1.0: not reused. */
  keepAlive = true;
  idleSince = 0;
  /** The server's Keep-Alive: timeout= hint, in ms (0: none). */
  keepAliveHintMs = 0;
  #headers: string[] = [];
  #parserReleased = false;
  readonly resume = (): void => {
    this.socket.resume();
  };

  constructor(
    readonly pool: Http1Pool,
    host: string,
    port: number,
    connectTimeoutMs: number,
  ) {
    const b = llhttp!;
    this.parser = newParser(b, b.HTTPParser.RESPONSE);
    const p = this.parser;
    p[b.HTTPParser.kOnHeaders] = (h: string[]) => {
      for (let i = 0; i < h.length; i++) this.#headers.push(h[i]);
    };
    p[b.HTTPParser.kOnHeadersComplete] = this.#onHeadersComplete;
    p[b.HTTPParser.kOnBody] = this.#onBody;
    p[b.HTTPParser.kOnMessageComplete] = this.#onMessageComplete;
    // Reads land in one shared buffer (no stream 'data' path): llhttp copies body bytes out and
    // gives headers as strings, and a read is parsed before the next one can arrive.
    const s = connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number) => {
          this.#onRead(READ_BUFFER.subarray(0, n));
          return true; // backpressure pauses the socket itself (onData → pause)
        },
      },
    });
    this.socket = s;
    s.setTimeout(connectTimeoutMs, () => {
      if (s.connecting) this.fail(codedError('UND_ERR_CONNECT_TIMEOUT', `Connect Timeout Error (${connectTimeoutMs} ms)`));
    });
    s.once('connect', () => {
      s.setTimeout(0);
      this.req?.handler.onRequestSent?.();
    });
    s.on('end', () => {
      // A response without a length ends with the connection.
      if (this.req?.headersSeen) {
        const r = p.finish();
        if (r instanceof Error) this.fail(codedError('UND_ERR_SOCKET', `bad response from the server: ${r.message}`));
      }
      this.fail(codedError('UND_ERR_SOCKET', 'other side closed'));
    });
    s.on('error', (err) => this.fail(err));
    s.on('close', () => this.fail(codedError('UND_ERR_SOCKET', 'other side closed')));
  }

  #onRead(d: Buffer): void {
    if (this.req === null) {
      this.fail(codedError('UND_ERR_SOCKET', 'data from the server on an idle connection'));
      return;
    }
    const r = this.parser.execute(d);
    if (r instanceof Error) this.fail(codedError('UND_ERR_SOCKET', `bad response from the server: ${r.message}`));
    else if (this.dead) this.fail(codedError('UND_ERR_SOCKET', 'the connection cannot be reused'));
    else if (this.req === null) this.pool.release(this);
  }

  /** Writes the request: head and held body in one write. */
  send(r: PooledRequest): void {
    this.req = r;
    r.conn = this;
    r.since = Date.now();
    const o = r.opts;
    let head = `${o.method} ${o.path} HTTP/1.1\r\n`;
    let hasHost = false;
    let hasLength = false;
    const h = o.headers;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i];
      if (name.length === 4 && name.toLowerCase() === 'host') hasHost = true;
      else if (name.length === 14 && name.toLowerCase() === 'content-length') hasLength = true;
      head += `${name}: ${h[i + 1]}\r\n`;
    }
    if (!hasHost) head += `host: ${this.pool.hostHeader}\r\n`;
    if (!hasLength && (o.body !== null || BODY_METHODS.has(o.method))) head += `content-length: ${o.body?.length ?? 0}\r\n`;
    head += '\r\n';
    const s = this.socket;
    if (s.isPaused()) s.resume(); // the last answer may have left it paused by backpressure
    if (o.body !== null && o.body.length > 0) {
      // One buffer, one write: header bytes are latin1, one byte per character.
      const out = Buffer.allocUnsafe(head.length + o.body.length);
      out.write(head, 0, 'latin1');
      o.body.copy(out, head.length);
      s.write(out);
    } else s.write(head, 'latin1');
    if (!s.connecting) r.handler.onRequestSent?.();
  }

  readonly #onHeadersComplete = (
    _major: number,
    _minor: number,
    headers: string[] | undefined,
    _method: number,
    _url: string | undefined,
    status: number,
    statusText: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number => {
    const h = headers ?? this.#headers;
    this.#headers = [];
    const r = this.req;
    if (r === null || upgrade) {
      // An answer nobody asked for, or a protocol switch nobody asked for: the connection is out of step.
      this.fail(codedError('UND_ERR_SOCKET', 'unexpected response from the server'));
      return SKIP_BODY;
    }
    r.since = Date.now();
    if (status < 200) {
      r.interim = true;
      r.handler.onHeaders(status, h, this.resume, statusText);
      return 0;
    }
    r.headersSeen = true;
    this.keepAlive = keepAlive;
    for (let i = 0; i < h.length; i += 2) {
      if (h[i].length === 10 && h[i].toLowerCase() === 'keep-alive') {
        const m = /timeout=(\d+)/i.exec(h[i + 1]);
        if (m) this.keepAliveHintMs = Number(m[1]) * 1000;
      }
    }
    if (!r.handler.onHeaders(status, h, this.resume, statusText) && !this.dead) this.socket.pause();
    return r.opts.method === 'HEAD' ? SKIP_BODY : 0;
  };

  readonly #onBody = (chunk: Buffer): void => {
    const r = this.req;
    if (r === null || r.done) return;
    r.since = Date.now();
    if (!r.handler.onData(chunk) && !this.dead) this.socket.pause();
  };

  readonly #onMessageComplete = (): void => {
    const r = this.req;
    if (r === null) return;
    if (r.interim) {
      r.interim = false; // the final answer follows on the same connection
      return;
    }
    this.req = null;
    r.conn = null;
    if (!this.keepAlive) this.dead = true;
    if (r.done) return;
    r.done = true;
    r.handler.onComplete(null);
  };

  /** The connection is finished: its request (if any) fails with err, the pool forgets it. */
  fail(err: Error): void {
    const r = this.req;
    this.req = null;
    this.dead = true;
    if (!this.socket.destroyed) this.socket.destroy();
    if (!this.#parserReleased) {
      this.#parserReleased = true;
      releaseParser(this.parser);
    }
    this.pool.forget(this);
    r?.finishWithError(err);
  }
}

/** The lean pool of one server; same options as its undici pool. */
export class Http1Pool {
  readonly hostHeader: string;
  readonly #host: string;
  readonly #port: number;
  readonly #opts: Http1PoolOptions;
  #idle: UpConn[] = [];
  readonly #all = new Set<UpConn>();
  #queue: PooledRequest[] = [];
  #sweep: NodeJS.Timeout | null = null;
  #closed: Promise<void> | null = null;
  #onIdle: (() => void) | null = null;
  #destroyed = false;

  constructor(origin: string, opts: Http1PoolOptions) {
    const u = new URL(origin);
    if (u.protocol !== 'http:') throw new Error(`the lean HTTP/1.1 client speaks http: only, not ${u.protocol}`);
    this.#host = u.hostname.replace(/^\[|\]$/g, '');
    this.#port = Number(u.port || 80);
    this.hostHeader = u.host;
    this.#opts = opts;
  }

  dispatch(opts: Http1RequestOptions, handler: Http1Handler): boolean {
    const r = new PooledRequest(this, opts, handler);
    handler.onConnect((err) => r.abort(err));
    if (r.done) return true;
    if (this.#closed !== null || this.#destroyed) {
      r.finishWithError(codedError('UND_ERR_DESTROYED', 'the pool is closed'));
      return false;
    }
    const c = this.#take();
    if (c) c.send(r);
    else this.#queue.push(r);
    return true;
  }

  /** An idle connection, or a new one while under the limit. */
  #take(): UpConn | null {
    const now = Date.now();
    for (let c = this.#idle.pop(); c; c = this.#idle.pop()) {
      if (!c.dead && now - c.idleSince < this.#idleLimit(c)) return c;
      c.fail(codedError('UND_ERR_SOCKET', 'keep-alive timeout'));
    }
    if (this.#all.size >= this.#opts.connectionsPerServer) return null;
    const c = new UpConn(this, this.#host, this.#port, this.#opts.connectTimeoutMs);
    this.#all.add(c);
    this.#sweep ??= setInterval(() => this.#check(), this.#tickMs()).unref();
    return c;
  }

  /** How long a connection may stay idle: our keep-alive time, or less when the server said so (minus a second, as undici). */
  #idleLimit(c: UpConn): number {
    return c.keepAliveHintMs > 0 ? Math.min(this.#opts.keepAliveMs, c.keepAliveHintMs - 1000) : this.#opts.keepAliveMs;
  }

  #tickMs(): number {
    const o = this.#opts;
    const shortest = Math.min(o.headersTimeoutMs, o.idleTimeoutMs || Number.POSITIVE_INFINITY, o.keepAliveMs);
    return Math.max(10, Math.min(1000, Math.floor(shortest / 4)));
  }

  /** A connection finished its request and may serve the next one. */
  release(c: UpConn): void {
    const next = this.#queue.shift();
    if (next) {
      c.send(next);
      return;
    }
    if (this.#closed !== null) {
      c.fail(codedError('UND_ERR_SOCKET', 'pool closing'));
      return;
    }
    c.idleSince = Date.now();
    this.#idle.push(c);
  }

  forget(c: UpConn): void {
    if (!this.#all.delete(c)) return;
    const i = this.#idle.indexOf(c);
    if (i >= 0) this.#idle.splice(i, 1);
    if (this.#queue.length > 0 && !this.#destroyed) {
      const n = this.#take();
      const next = n && this.#queue.shift();
      if (n && next) n.send(next);
      else if (n) this.release(n);
    }
    if (this.#all.size === 0) {
      if (this.#sweep) clearInterval(this.#sweep);
      this.#sweep = null;
      this.#onIdle?.();
    }
  }

  unqueue(r: PooledRequest): void {
    const i = this.#queue.indexOf(r);
    if (i >= 0) this.#queue.splice(i, 1);
  }

  /** Timeouts of every connection, checked in one pass (no timer per request). */
  #check(): void {
    const now = Date.now();
    const o = this.#opts;
    for (const c of this.#all) {
      const r = c.req;
      if (r === null) {
        if (now - c.idleSince >= this.#idleLimit(c)) c.fail(codedError('UND_ERR_SOCKET', 'keep-alive timeout'));
      } else if (!r.headersSeen) {
        if (!c.socket.connecting && now - r.since >= o.headersTimeoutMs) c.fail(codedError('UND_ERR_HEADERS_TIMEOUT', 'Headers Timeout Error'));
      } else if (o.idleTimeoutMs > 0 && now - r.since >= o.idleTimeoutMs && !c.socket.isPaused()) {
        c.fail(codedError('UND_ERR_BODY_TIMEOUT', 'Body Timeout Error'));
      }
    }
  }

  /** Gracefully: queued and running requests finish, then every connection closes. */
  close(): Promise<void> {
    this.#closed ??= new Promise<void>((resolve) => {
      for (const c of [...this.#idle]) c.fail(codedError('UND_ERR_SOCKET', 'pool closing'));
      if (this.#all.size === 0) return resolve();
      this.#onIdle = resolve;
    });
    return this.#closed;
  }

  /** At once: every request fails, every connection closes. */
  destroy(): Promise<void> {
    this.#destroyed = true;
    const err = codedError('UND_ERR_DESTROYED', 'the pool was destroyed');
    for (const r of this.#queue.splice(0)) r.finishWithError(err);
    for (const c of [...this.#all]) c.fail(err);
    return Promise.resolve();
  }
}
