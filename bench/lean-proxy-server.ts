// Prototype for issue 13 (run as its own process by bench/lean-proxy-experiment.ts): a lean
// HTTP/1.1 reverse proxy on node:net with Node's own llhttp binding (the parser node:http uses,
// strict mode) on both sides, and two "ceiling" servers that answer by themselves.
// MODE=proxy          lean proxy to UPSTREAM (one host:port) over a pool of raw keep-alive sockets
// MODE=ceiling-net    net + llhttp server answering {"ok":true} itself (no upstream)
// MODE=ceiling-http   bare node:http server answering {"ok":true} itself (no upstream)
// MODE=http-rawclient node:http server side + the raw upstream pool (layer split)
// MODE=net-undici     lean server side + undici Pool.dispatch client side (layer split)
// MODE=http-undici    node:http + undici Pool.dispatch: the booster's shape without its logic
// LEAN_CONSUME=1      (MODE=proxy) parser.consume(handle) on both sides, as node:http does
// Usage: MODE=proxy PORT=8080 UPSTREAM=http://127.0.0.1:3000 npx tsx bench/lean-proxy-server.ts
// Prints LISTENING once bound. Not a product: no timeouts, no TLS/h2, no upgrades, no Expect.
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { type Dispatcher, Pool as UndiciPool } from 'undici';

process.noDeprecation = true; // process.binding('http_parser') is DEP0111 (still the parser node:http uses)
const { HTTPParser, methods } = (process as any).binding('http_parser') as { HTTPParser: any; methods: string[] };
const kOnHeaders: number = HTTPParser.kOnHeaders;
const kOnHeadersComplete: number = HTTPParser.kOnHeadersComplete;
const kOnBody: number = HTTPParser.kOnBody;
const kOnMessageComplete: number = HTTPParser.kOnMessageComplete;
const kOnExecute: number = HTTPParser.kOnExecute;
// LEAN_CONSUME=1: parser.consume(handle) as node:http does: reads go from libuv straight into
// llhttp in C++ (no 'data' events, no stream read path); kOnExecute reports each chunk's result.
const CONSUME = process.env.LEAN_CONSUME === '1';
const STRICT: number = HTTPParser.kLenientNone;
const MAX_HEADER = 16 * 1024;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-authorization']);
const ID_PREFIX = randomBytes(4).toString('hex');
let idSeq = 0;

const mode = process.env.MODE ?? 'proxy';
const port = Number(process.env.PORT ?? 0);
const OK = Buffer.from('{"ok":true}');

let dateStr = new Date().toUTCString();
setInterval(() => (dateStr = new Date().toUTCString()), 1000).unref();

const BAD_REQUEST = Buffer.from('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
const BAD_GATEWAY = 'HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n';
const NOT_IMPLEMENTED = Buffer.from('HTTP/1.1 501 Not Implemented\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');

function newParser(type: number): any {
  const p = new HTTPParser();
  p.initialize(type, {}, MAX_HEADER, STRICT);
  return p;
}

/** Connection-header tokens naming extra hop-by-hop headers (other than close/keep-alive/upgrade). */
function connectionTokens(v: string, into: Set<string> | null): Set<string> | null {
  for (const t of v.split(',')) {
    const tok = t.trim().toLowerCase();
    if (tok && tok !== 'close' && tok !== 'keep-alive' && tok !== 'upgrade') (into ??= new Set()).add(tok);
  }
  return into;
}

// ---------------------------------------------------------------- upstream pool

type Upstream = { host: string; port: number };

/** What the upstream pool serves: an exchange of the lean server or of the node:http hybrid. */
interface UpUser {
  readonly conn: { readonly socket: Socket };
  attach(c: UpConn): void;
  onResponseHead(status: number, statusMessage: string, h: string[], keepAlive: boolean): number;
  onResponseBody(b: Buffer): void;
  onResponseEnd(c: UpConn): void;
  upstreamFailed(err: Error): void;
}

/** One raw keep-alive socket to the upstream with a RESPONSE parser. */
class UpConn {
  readonly socket: Socket;
  readonly parser = newParser(HTTPParser.RESPONSE);
  ex: UpUser | null = null;
  private hdrs: string[] = [];
  dead = false;
  unsolicited = false;
  corkedClient: Socket | null = null;

  constructor(
    readonly pool: Pool,
    up: Upstream,
  ) {
    const s = connect(up.port, up.host);
    s.setNoDelay(true);
    this.socket = s;
    const p = this.parser;
    p[kOnHeaders] = (h: string[]) => {
      for (let i = 0; i < h.length; i++) this.hdrs.push(h[i]);
    };
    p[kOnHeadersComplete] = (
      _maj: number,
      _min: number,
      headers: string[] | undefined,
      _m: number,
      _u: string,
      status: number,
      statusMessage: string,
      _upg: boolean,
      keepAlive: boolean,
    ): number => {
      const h = headers ?? this.hdrs;
      this.hdrs = [];
      const ex = this.ex;
      if (!ex) {
        // a response nobody asked for (desync): this connection must not be reused
        this.unsolicited = true;
        return 0;
      }
      if (CONSUME && !this.corkedClient) {
        this.corkedClient = ex.conn.socket;
        this.corkedClient.cork();
      }
      return ex.onResponseHead(status, statusMessage, h, keepAlive);
    };
    p[kOnBody] = (b: Buffer) => this.ex?.onResponseBody(b);
    p[kOnMessageComplete] = () => this.ex?.onResponseEnd(this);
    if (CONSUME) {
      s.once('connect', () => p.consume((s as any)._handle));
      p[kOnExecute] = (r: number | Error) => {
        const c = this.corkedClient;
        this.corkedClient = null;
        c?.uncork();
        if (r instanceof Error) this.fail(r);
        else if (this.unsolicited) this.fail(new Error('unsolicited response'));
      };
    }
    s.on('data', (d: Buffer) => {
      const ex = this.ex;
      if (!ex) {
        this.fail(new Error('data on an idle upstream connection'));
        return;
      }
      const client = ex.conn.socket;
      client.cork();
      const r = p.execute(d);
      client.uncork();
      if (r instanceof Error) this.fail(r);
      else if (this.unsolicited) this.fail(new Error('unsolicited response'));
    });
    s.on('drain', () => this.ex?.conn.socket.resume());
    s.on('end', () => {
      if (this.ex) {
        const r = p.finish(); // a read-until-close response ends here
        if (r instanceof Error) this.fail(r);
      }
      this.fail(new Error('upstream closed'));
    });
    s.on('error', (e) => this.fail(e));
    s.on('close', () => this.fail(new Error('upstream closed')));
  }

  fail(err: Error): void {
    if (this.dead) return;
    this.dead = true;
    this.socket.destroy();
    this.pool.forget(this);
    const ex = this.ex;
    this.ex = null;
    ex?.upstreamFailed(err);
  }
}

class Pool {
  private idle: UpConn[] = [];
  private total = 0;
  private waiting: UpUser[] = [];
  constructor(
    readonly up: Upstream,
    readonly max: number,
  ) {}

  acquire(ex: UpUser): void {
    const c = this.idle.pop();
    if (c) {
      ex.attach(c);
      return;
    }
    if (this.total < this.max) {
      this.total++;
      ex.attach(new UpConn(this, this.up));
      return;
    }
    this.waiting.push(ex);
  }

  release(c: UpConn): void {
    c.ex = null;
    const next = this.waiting.shift();
    if (next) {
      next.attach(c);
      return;
    }
    this.idle.push(c);
  }

  forget(c: UpConn): void {
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    this.total--;
    const next = this.waiting.shift();
    if (next) this.acquire(next);
  }

  cancel(ex: UpUser): void {
    const i = this.waiting.indexOf(ex);
    if (i >= 0) this.waiting.splice(i, 1);
  }
}

// ---------------------------------------------------------------- one request/response

/** A request from a client connection and its upstream response. */
class Exchange {
  up: UpConn | null = null;
  /** Body chunks (already framed for the upstream) waiting for an upstream socket. */
  pending: (Buffer | string)[] = [];
  reqDone = false;
  resStarted = false;
  resDone = false;
  resChunked = false;
  upKeepAlive = true;
  finished = false;

  constructor(
    readonly conn: ClientConn,
    readonly head: string,
    readonly chunked: boolean,
    readonly isHead: boolean,
    public keepAlive: boolean,
    readonly http10: boolean,
  ) {}

  /** Starts the upstream request (the exchange is at the head of the client's queue). */
  start(): void {
    this.conn.pool.acquire(this);
  }

  attach(c: UpConn): void {
    if (this.finished) {
      this.conn.pool.release(c);
      return;
    }
    this.up = c;
    c.ex = this;
    const s = c.socket;
    // Head and whatever body already arrived go out in one writev; the client's data handler
    // uncorks after parser.execute, so body chunks of the same read join it.
    s.cork();
    this.conn.corked.push(s);
    s.write(this.head);
    for (const b of this.pending) s.write(b);
    this.pending = [];
    if (!this.conn.inExecute) s.uncork(); // attached later (pool wait, pipelining): flush now
  }

  onRequestBody(b: Buffer): void {
    if (this.chunked) {
      this.send(`${b.length.toString(16)}\r\n`);
      this.send(b);
      this.send('\r\n');
    } else this.send(b);
  }

  onRequestEnd(): void {
    this.reqDone = true;
    if (this.chunked) this.send('0\r\n\r\n');
    if (this.resDone && this.up) this.releaseUp();
  }

  private send(b: Buffer | string): void {
    if (!this.up) {
      this.pending.push(b);
      return;
    }
    if (!this.up.socket.write(b)) this.conn.socket.pause();
  }

  onResponseHead(status: number, statusMessage: string, h: string[], upKeepAlive: boolean): number {
    if (status < 200) return 0; // 1xx (100-continue, 103): not forwarded by the prototype
    this.upKeepAlive = upKeepAlive;
    let out = `HTTP/1.1 ${status} ${statusMessage}\r\n`;
    let hasLength = false;
    let chunked = false;
    let extraHop: Set<string> | null = null;
    for (let i = 0; i < h.length; i += 2) {
      const lower = h[i].toLowerCase();
      if (lower === 'connection') extraHop = connectionTokens(h[i + 1], extraHop);
      if (HOP_BY_HOP.has(lower)) {
        if (lower === 'transfer-encoding') chunked = true;
        continue;
      }
      if (lower === 'content-length') hasLength = true;
      if (extraHop?.has(lower)) continue;
      out += `${h[i]}: ${h[i + 1]}\r\n`;
    }
    if (extraHop) {
      // a later Connection header named earlier headers: rebuild without them (rare)
      out = `HTTP/1.1 ${status} ${statusMessage}\r\n`;
      for (let i = 0; i < h.length; i += 2) {
        const lower = h[i].toLowerCase();
        if (!HOP_BY_HOP.has(lower) && !extraHop.has(lower)) out += `${h[i]}: ${h[i + 1]}\r\n`;
      }
    }
    const noBody = this.isHead || status === 204 || status === 304;
    if (!noBody && !hasLength && this.http10)
      this.keepAlive = false; // HTTP/1.0 client: body until close
    else if (!noBody && !hasLength) {
      // chunked upstream or read-until-close: re-chunk to the client (keeps its connection)
      this.resChunked = true;
      out += 'transfer-encoding: chunked\r\n';
    } else if (this.isHead && chunked) out += 'transfer-encoding: chunked\r\n';
    if (!this.keepAlive) out += 'connection: close\r\n';
    out += '\r\n';
    this.resStarted = true;
    this.conn.socket.write(out);
    return this.isHead ? 1 : 0; // 1 = no body follows (HEAD)
  }

  onResponseBody(b: Buffer): void {
    const s = this.conn.socket;
    let ok: boolean;
    if (this.resChunked) {
      s.write(`${b.length.toString(16)}\r\n`);
      s.write(b);
      ok = s.write('\r\n');
    } else ok = s.write(b);
    if (!ok && this.up) {
      this.up.socket.pause();
      this.conn.waitDrain(this.up.socket);
    }
  }

  onResponseEnd(c: UpConn): void {
    if (!this.resStarted) return; // end of a 1xx
    if (this.resChunked) this.conn.socket.write('0\r\n\r\n');
    this.resDone = true;
    if (this.reqDone) this.releaseUp();
    else if (this.up === c) {
      // answered before the request body finished: this upstream connection cannot be reused
      this.up = null;
      c.ex = null;
      c.fail(new Error('early response'));
    }
    this.finish();
  }

  private releaseUp(): void {
    const c = this.up!;
    this.up = null;
    if (this.upKeepAlive && !c.dead) c.pool.release(c);
    else {
      c.ex = null;
      c.fail(new Error('upstream not keep-alive'));
    }
  }

  upstreamFailed(_err: Error): void {
    this.up = null;
    if (this.finished) return;
    if (this.resStarted) {
      this.finished = true;
      this.conn.socket.destroy(); // mid-body: the client can only see a cut
      return;
    }
    this.conn.socket.write(`${BAD_GATEWAY}${this.keepAlive && this.reqDone ? '' : 'connection: close\r\n'}\r\n`);
    if (!this.reqDone) this.conn.socket.end();
    this.finish();
  }

  protected finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.conn.exchangeDone(this);
  }

  abort(): void {
    this.finished = true;
    this.conn.pool.cancel(this);
    const c = this.up;
    this.up = null;
    if (c) {
      c.ex = null;
      c.fail(new Error('client gone'));
    }
  }
}

/** The upstream request head: hop-by-hop headers out, forwarding headers and a request id in. */
function upstreamHead(method: string, url: string, h: string[], remote: string): { head: string; te: string | undefined } {
  let head = `${method} ${url} HTTP/1.1\r\n`;
  let xff: string | undefined;
  let host: string | undefined;
  let requestId: string | undefined;
  let te: string | undefined;
  let extraHop: Set<string> | null = null;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i];
    const lower = name.toLowerCase();
    const v = h[i + 1];
    if (lower === 'connection') {
      extraHop = connectionTokens(v, extraHop);
      continue;
    }
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'transfer-encoding') te = te ? `${te}, ${v}` : v;
      continue;
    }
    switch (lower) {
      case 'x-forwarded-for':
        xff = xff ? `${xff}, ${v}` : v;
        continue;
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
        continue;
      case 'x-request-id':
        requestId = v;
        continue;
      case 'host':
        host = v;
        break;
      case 'expect':
        // Expect: 100-continue would need an interim answer; the prototype forwards the
        // header and lets the upstream send 100 (swallowed); a product must handle it.
        break;
    }
    if (extraHop?.has(lower)) continue;
    head += `${name}: ${v}\r\n`;
  }
  if (extraHop) {
    head = `${method} ${url} HTTP/1.1\r\n`;
    for (let i = 0; i < h.length; i += 2) {
      const lower = h[i].toLowerCase();
      if (HOP_BY_HOP.has(lower) || extraHop.has(lower)) continue;
      if (lower === 'x-forwarded-for' || lower === 'x-forwarded-proto' || lower === 'x-forwarded-host' || lower === 'x-request-id') continue;
      head += `${h[i]}: ${h[i + 1]}\r\n`;
    }
  }
  head += `x-forwarded-for: ${xff ? `${xff}, ${remote}` : remote}\r\nx-forwarded-proto: http\r\nx-request-id: ${requestId ?? `${ID_PREFIX}-${(++idSeq).toString(36)}`}\r\n`;
  if (host !== undefined) head += `x-forwarded-host: ${host}\r\n`;
  if (te !== undefined) head += `transfer-encoding: ${te}\r\n`; // llhttp guarantees chunked is last; the body is re-chunked
  head += '\r\n';
  return { head, te };
}

// ---------------------------------------------------------------- client side

class ClientConn {
  readonly parser = newParser(HTTPParser.REQUEST);
  /** Exchanges in arrival order (more than one only when the client pipelines). */
  readonly queue: Exchange[] = [];
  /** The exchange whose request the parser is reading. */
  parsing: Exchange | null = null;
  corked: Socket[] = [];
  inExecute = false;
  private hdrs: string[] = [];
  private url = '';
  private readonly remote: string;
  private closing = false;

  constructor(
    readonly socket: Socket,
    readonly pool: Pool,
  ) {
    this.remote = socket.remoteAddress ?? '';
    socket.setNoDelay(true);
    const p = this.parser;
    p[kOnHeaders] = (h: string[], url: string) => {
      for (let i = 0; i < h.length; i++) this.hdrs.push(h[i]);
      this.url += url;
    };
    p[kOnHeadersComplete] = (
      major: number,
      minor: number,
      headers: string[] | undefined,
      method: number,
      url: string | undefined,
      _s: number,
      _sm: string,
      upgrade: boolean,
      keepAlive: boolean,
    ): number => {
      const h = headers ?? this.hdrs;
      const u = url ?? this.url;
      this.hdrs = [];
      this.url = '';
      if (upgrade) {
        // Upgrade / CONNECT: the product keeps node:http (or a tunnel) for these
        this.closing = true;
        socket.end(NOT_IMPLEMENTED);
        return 2;
      }
      if (CONSUME) this.inExecute = true; // reset in kOnExecute
      this.onRequest(methods[method], u, h, keepAlive, major, minor);
      return 0;
    };
    p[kOnBody] = (b: Buffer) => this.parsing?.onRequestBody(b);
    p[kOnMessageComplete] = () => {
      const ex = this.parsing;
      this.parsing = null;
      ex?.onRequestEnd();
    };
    const afterExecute = (r: number | Error) => {
      this.inExecute = false;
      const corked = this.corked;
      if (corked.length) {
        for (const s of corked) s.uncork();
        this.corked = [];
      }
      if (r instanceof Error) this.badRequest();
      else if (this.queue.length > 1) socket.pause(); // pipelined: read on once the queue drains
    };
    socket.on('data', (d: Buffer) => {
      if (this.closing) return;
      this.inExecute = true;
      afterExecute(p.execute(d));
    });
    if (CONSUME) {
      p[kOnExecute] = (r: number | Error) => {
        if (!this.closing) afterExecute(r);
      };
      p.consume((socket as any)._handle);
    }
    socket.on('end', () => {
      if (this.parsing) this.abortAll();
      else if (this.queue.length === 0) socket.end();
      else this.closing = true; // half-close after a complete request: answer, then close
    });
    socket.on('error', () => this.abortAll());
    socket.on('close', () => this.abortAll());
  }

  private onRequest(method: string, url: string, h: string[], keepAlive: boolean, major: number, minor: number): void {
    const { head, te } = upstreamHead(method, url, h, this.remote);
    const ex = undiciPool
      ? new UndiciExchange(this, head, te !== undefined, method === 'HEAD', keepAlive, major === 1 && minor === 0, method, url, h)
      : new Exchange(this, head, te !== undefined, method === 'HEAD', keepAlive, major === 1 && minor === 0);
    this.parsing = ex;
    this.queue.push(ex);
    if (this.queue.length === 1) ex.start();
  }

  exchangeDone(ex: Exchange): void {
    const i = this.queue.indexOf(ex);
    if (i >= 0) this.queue.splice(i, 1);
    if (!ex.keepAlive) {
      this.closing = true;
      this.socket.end();
      return;
    }
    const next = this.queue[0];
    if (next) next.start();
    else if (this.closing) this.socket.end();
    if (this.queue.length <= 1 && this.socket.isPaused() && !this.closing) this.socket.resume();
  }

  waitDrain(up: Socket): void {
    this.socket.once('drain', () => up.resume());
  }

  private badRequest(): void {
    this.closing = true;
    this.abortAll();
    this.socket.end(BAD_REQUEST);
  }

  private abortAll(): void {
    this.closing = true;
    for (const ex of this.queue.splice(0)) ex.abort();
    this.parsing = null;
  }
}

// ---------------------------------------------------------------- ceiling: net + llhttp, answers itself

function ceilingNet(socket: Socket): void {
  socket.setNoDelay(true);
  const p = newParser(HTTPParser.REQUEST);
  let keep = true;
  p[kOnHeadersComplete] = (_a: number, _b: number, _h: string[], _m: number, _u: string, _s: number, _sm: string, _up: boolean, keepAlive: boolean) => {
    keep = keepAlive;
    return 0;
  };
  p[kOnBody] = () => {};
  p[kOnMessageComplete] = () => {
    // the same bytes node:http sends for the upstream's answer
    socket.write(
      `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${OK.length}\r\nDate: ${dateStr}\r\nConnection: ${keep ? 'keep-alive\r\nKeep-Alive: timeout=60' : 'close'}\r\n\r\n{"ok":true}`,
    );
    if (!keep) socket.end();
  };
  socket.on('data', (d: Buffer) => {
    if (p.execute(d) instanceof Error) socket.end(BAD_REQUEST);
  });
  socket.on('error', () => socket.destroy());
}

// ---------------------------------------------------------------- hybrid: node:http server side, raw client side

/**
 * MODE=http-rawclient: the node:http server (IncomingMessage/ServerResponse) in front of the same raw
 * net + llhttp upstream pool, to tell the cost of the server side from the cost of the client side.
 */
class HttpExchange implements UpUser {
  up: UpConn | null = null;
  pending: (Buffer | string)[] = [];
  reqDone = false;
  resStarted = false;
  resDone = false;
  upKeepAlive = true;
  finished = false;
  readonly conn: { readonly socket: Socket };

  constructor(
    readonly pool: Pool,
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
  ) {
    this.conn = { socket: req.socket };
    const { head, te } = upstreamHead(req.method!, req.url!, req.rawHeaders, req.socket.remoteAddress ?? '');
    this.pending.push(head);
    const chunked = te !== undefined;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      req.on('data', (b: Buffer) => {
        if (chunked) {
          this.send(`${b.length.toString(16)}\r\n`);
          this.send(b);
          this.send('\r\n');
        } else this.send(b);
      });
      req.on('end', () => this.onRequestEnd(chunked));
    } else this.reqDone = true;
    res.on('close', () => {
      if (!this.resDone) this.abort();
    });
    pool.acquire(this);
  }

  attach(c: UpConn): void {
    if (this.finished) {
      this.pool.release(c);
      return;
    }
    this.up = c;
    c.ex = this;
    const s = c.socket;
    s.cork();
    for (const b of this.pending) s.write(b);
    this.pending = [];
    if (this.reqDone) s.uncork();
    else process.nextTick(() => s.uncork()); // let a body chunk read with the head join the write
  }

  private send(b: Buffer | string): void {
    if (!this.up) this.pending.push(b);
    else if (!this.up.socket.write(b)) {
      this.req.pause();
      this.up.socket.once('drain', () => this.req.resume());
    }
  }

  private onRequestEnd(chunked: boolean): void {
    if (chunked) this.send('0\r\n\r\n');
    this.reqDone = true;
    if (this.resDone && this.up) this.releaseUp();
  }

  onResponseHead(status: number, statusMessage: string, h: string[], upKeepAlive: boolean): number {
    if (status < 200) return 0;
    this.upKeepAlive = upKeepAlive;
    const out: string[] = [];
    let extraHop: Set<string> | null = null;
    for (let i = 0; i < h.length; i += 2) if (h[i].length === 10 && h[i].toLowerCase() === 'connection') extraHop = connectionTokens(h[i + 1], extraHop);
    for (let i = 0; i < h.length; i += 2) {
      const lower = h[i].toLowerCase();
      if (HOP_BY_HOP.has(lower) || extraHop?.has(lower)) continue;
      out.push(h[i], h[i + 1]);
    }
    this.resStarted = true;
    this.res.writeHead(status, statusMessage, out); // node:http frames the body (chunked if no length)
    return this.req.method === 'HEAD' ? 1 : 0;
  }

  onResponseBody(b: Buffer): void {
    if (!this.res.write(b) && this.up) {
      const s = this.up.socket;
      s.pause();
      this.res.once('drain', () => s.resume());
    }
  }

  onResponseEnd(c: UpConn): void {
    if (!this.resStarted) return;
    this.resDone = true;
    this.res.end();
    if (this.reqDone) this.releaseUp();
    else if (this.up === c) {
      this.up = null;
      c.ex = null;
      c.fail(new Error('early response'));
    }
  }

  private releaseUp(): void {
    const c = this.up!;
    this.up = null;
    if (this.upKeepAlive && !c.dead) this.pool.release(c);
    else {
      c.ex = null;
      c.fail(new Error('upstream not keep-alive'));
    }
  }

  upstreamFailed(_err: Error): void {
    this.up = null;
    if (this.finished || this.resDone) return;
    this.finished = true;
    if (this.resStarted) this.res.destroy();
    else {
      this.res.writeHead(502, { 'content-length': 0 });
      this.res.end();
    }
  }

  private abort(): void {
    if (this.finished) return;
    this.finished = true;
    this.pool.cancel(this);
    const c = this.up;
    this.up = null;
    if (c) {
      c.ex = null;
      c.fail(new Error('client gone'));
    }
  }
}

// ---------------------------------------------------------------- hybrids with undici's client side

// MODE=net-undici (lean server side, undici Pool.dispatch client side) and MODE=http-undici
// (node:http server side, undici Pool.dispatch client side: the booster's shape without its logic).
// Both buffer the (small) request body and dispatch it as one Buffer, as the booster does for small bodies.
let undiciPool: UndiciPool | null = null;

/** Request headers for undici (which frames the body itself): hop-by-hop and framing out, forwarding in. */
function upstreamHeaderList(h: string[], remote: string): string[] {
  const out: string[] = [];
  let xff: string | undefined;
  let host: string | undefined;
  let requestId: string | undefined;
  let extraHop: Set<string> | null = null;
  for (let i = 0; i < h.length; i += 2) {
    const lower = h[i].toLowerCase();
    const v = h[i + 1];
    if (lower === 'connection') {
      extraHop = connectionTokens(v, extraHop);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || lower === 'content-length') continue;
    switch (lower) {
      case 'x-forwarded-for':
        xff = xff ? `${xff}, ${v}` : v;
        continue;
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
        continue;
      case 'x-request-id':
        requestId = v;
        continue;
      case 'host':
        host = v;
        break;
    }
    out.push(h[i], v);
  }
  const list = out;
  if (extraHop) for (let i = list.length - 2; i >= 0; i -= 2) if (extraHop.has(list[i].toLowerCase())) list.splice(i, 2);
  list.push(
    'x-forwarded-for',
    xff ? `${xff}, ${remote}` : remote,
    'x-forwarded-proto',
    'http',
    'x-request-id',
    requestId ?? `${ID_PREFIX}-${(++idSeq).toString(36)}`,
  );
  if (host !== undefined) list.push('x-forwarded-host', host);
  return list;
}

function latin1Pairs(raw: Buffer[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i++) out.push(raw[i].toString('latin1'));
  return out;
}

/** The lean server side with undici as the client side. */
class UndiciExchange extends Exchange {
  private body: Buffer[] = [];
  private started = false;
  private abortUp: ((err?: Error) => void) | null = null;
  private resume: (() => void) | null = null;

  constructor(
    conn: ClientConn,
    head: string,
    chunked: boolean,
    isHead: boolean,
    keepAlive: boolean,
    http10: boolean,
    readonly method: string,
    readonly url: string,
    readonly rawHeaders: string[],
  ) {
    super(conn, head, chunked, isHead, keepAlive, http10);
  }

  override start(): void {
    this.started = true;
    if (this.reqDone) this.dispatch();
  }
  override onRequestBody(b: Buffer): void {
    this.body.push(b);
  }
  override onRequestEnd(): void {
    this.reqDone = true;
    if (this.started) this.dispatch();
  }
  override abort(): void {
    this.finished = true;
    this.abortUp?.(new Error('client gone'));
  }

  private dispatch(): void {
    const body = this.body.length === 0 ? null : this.body.length === 1 ? this.body[0] : Buffer.concat(this.body);
    const headers = upstreamHeaderList(this.rawHeaders, this.conn.socket.remoteAddress ?? '');
    const self = this;
    const handler = {
      onConnect(abort: (err?: Error) => void) {
        self.abortUp = abort;
      },
      onHeaders(status: number, raw: Buffer[], resume: () => void, statusText?: string) {
        if (status < 200) return true;
        self.resume = resume;
        self.onResponseHead(status, statusText ?? '', latin1Pairs(raw), true);
        return true;
      },
      onData(b: Buffer) {
        const s = self.conn.socket;
        if (self.resChunked) {
          s.write(`${b.length.toString(16)}\r\n`);
          s.write(b);
          const ok = s.write('\r\n');
          if (!ok) s.once('drain', () => self.resume?.());
          return ok;
        }
        const ok = s.write(b);
        if (!ok) s.once('drain', () => self.resume?.());
        return ok;
      },
      onComplete() {
        if (self.resChunked) self.conn.socket.write('0\r\n\r\n');
        self.resDone = true;
        self.finish();
      },
      onError(_err: Error) {
        if (self.finished) return;
        if (self.resStarted) {
          self.finished = true;
          self.conn.socket.destroy();
          return;
        }
        self.conn.socket.write(`${BAD_GATEWAY}\r\n`);
        self.finish();
      },
    };
    undiciPool!.dispatch({ method: this.method as Dispatcher.HttpMethod, path: this.url, headers, body }, handler as unknown as Dispatcher.DispatchHandler);
  }
}

/** node:http server side with undici as the client side (booster-shaped, without its logic). */
function httpUndici(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  const go = () => {
    const body = chunks.length === 0 ? null : chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    const headers = upstreamHeaderList(req.rawHeaders, req.socket.remoteAddress ?? '');
    let responded = false;
    let abortUp: ((err?: Error) => void) | null = null;
    res.on('close', () => {
      if (!res.writableFinished) abortUp?.(new Error('client gone'));
    });
    const handler = {
      onConnect(abort: (err?: Error) => void) {
        abortUp = abort;
      },
      onHeaders(status: number, raw: Buffer[], resume: () => void, statusText?: string) {
        if (status < 200) return true;
        const out: string[] = [];
        for (let i = 0; i < raw.length; i += 2) {
          const name = raw[i].toString('latin1');
          if (HOP_BY_HOP.has(name.toLowerCase())) continue;
          out.push(name, raw[i + 1].toString('latin1'));
        }
        responded = true;
        res.writeHead(status, statusText || undefined, out);
        res.on('drain', resume);
        return true;
      },
      onData(b: Buffer) {
        return res.write(b);
      },
      onComplete() {
        res.end();
      },
      onError(_err: Error) {
        if (responded) res.destroy();
        else {
          res.writeHead(502, { 'content-length': 0 });
          res.end();
        }
      },
    };
    undiciPool!.dispatch(
      { method: req.method as Dispatcher.HttpMethod, path: req.url ?? '/', headers, body },
      handler as unknown as Dispatcher.DispatchHandler,
    );
  };
  if (req.method === 'GET' || req.method === 'HEAD') {
    go();
    return;
  }
  req.on('data', (b: Buffer) => chunks.push(b));
  req.on('end', go);
}

// ---------------------------------------------------------------- main

if (mode === 'proxy') {
  const u = new URL(process.env.UPSTREAM ?? 'http://127.0.0.1:3000');
  const pool = new Pool({ host: u.hostname, port: Number(u.port || 80) }, Number(process.env.POOL_MAX ?? 256));
  createServer({ noDelay: true }, (s) => new ClientConn(s, pool)).listen(port, '127.0.0.1', () => process.stdout.write('LISTENING\n'));
} else if (mode === 'http-rawclient') {
  const u = new URL(process.env.UPSTREAM ?? 'http://127.0.0.1:3000');
  const pool = new Pool({ host: u.hostname, port: Number(u.port || 80) }, Number(process.env.POOL_MAX ?? 256));
  const server = createHttpServer((req, res) => new HttpExchange(pool, req, res));
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => process.stdout.write('LISTENING\n'));
} else if (mode === 'net-undici' || mode === 'http-undici') {
  undiciPool = new UndiciPool(process.env.UPSTREAM ?? 'http://127.0.0.1:3000', { connections: Number(process.env.POOL_MAX ?? 256), pipelining: 1 });
  const u = new URL(process.env.UPSTREAM ?? 'http://127.0.0.1:3000');
  const pool = new Pool({ host: u.hostname, port: Number(u.port || 80) }, 1); // unused: undici is the client side
  if (mode === 'net-undici')
    createServer({ noDelay: true }, (s) => new ClientConn(s, pool)).listen(port, '127.0.0.1', () => process.stdout.write('LISTENING\n'));
  else {
    const server = createHttpServer(httpUndici);
    server.keepAliveTimeout = 60_000;
    server.listen(port, '127.0.0.1', () => process.stdout.write('LISTENING\n'));
  }
} else if (mode === 'ceiling-net') {
  createServer({ noDelay: true }, ceilingNet).listen(port, '127.0.0.1', () => process.stdout.write('LISTENING\n'));
} else if (mode === 'ceiling-http') {
  const server = createHttpServer((req, res) => {
    const answer = () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': OK.length });
      res.end(OK);
    };
    if (req.method === 'GET') return answer();
    req.on('data', () => {});
    req.on('end', answer);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => process.stdout.write('LISTENING\n'));
} else throw new Error(`unknown MODE ${mode}`);
// --cpu-prof writes its file on a normal exit only
process.on('SIGINT', () => process.exit(0));
