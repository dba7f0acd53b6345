import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Client } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../../../booster/booster.js';
import { attachLeanFront, type LeanRequest, type LeanResponse } from '../../../../booster/data-plane/http1/front-connection.js';
import { type Http1Handler, Http1Pool } from '../../../../booster/data-plane/http1/http1-pool.js';
import { waitFor } from '../../../helpers/poll.js';
import { boosterConfig, boosterSuiteDatabase, type FixtureServer, silentLog, startFixtureServer } from '../../fixtures.js';

/**
 * The lean HTTP/1.1 path (ADR 0014) through a real booster and real loopback servers: what it
 * serves itself, what it refuses (the smuggling cases of the strict parser), what it hands to
 * node:http mid-connection; and the lean upstream client against real servers.
 */
const suite = boosterSuiteDatabase();
const { cleanups } = suite;

async function activeBoosterWithServer(id: string): Promise<{ b: Booster; base: string; s: FixtureServer }> {
  const b = createBooster({ config: boosterConfig(id), db: suite.db.db, log: silentLog });
  const base = await b.listen();
  cleanups.push(() => b.close());
  await waitFor(() => b.role() === 'active', { what: 'booster active' });
  const s = await startFixtureServer({ id: `${id}-s`, boosters: [base], knex: suite.db.knex });
  cleanups.push(() => s.stop());
  await s.heartbeatNow();
  await waitFor(() => b.table.routable.length >= 1, { what: 'server routable' });
  return { b, base, s };
}

/** Writes raw bytes on one connection and collects everything until the booster closes it (bounded). */
function rawExchange(base: string, bytes: string | Buffer, opts: { endAfterMs?: number; halfClose?: boolean; onServerEnd?: () => void } = {}): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const sock: Socket = connect(Number(u.port), u.hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => sock.destroy(), opts.endAfterMs ?? 3000);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('end', () => opts.onServerEnd?.());
    sock.on('error', reject);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    if (opts.halfClose) sock.end(bytes);
    else sock.write(bytes);
  });
}

/** Status lines of the answers on a connection (a body may end right before the next one). */
const statusLines = (text: string) => text.match(/HTTP\/1\.1 \d{3} [^\r\n]*/g) ?? [];

/**
 * How many of `refs` a full garbage collection cannot free, once every connection is closed and
 * a few turns have passed (a parser is closed a turn after its connection). The flag is set at
 * run time: vitest's workers start without it.
 */
async function stillHeld(refs: WeakRef<object>[]): Promise<number> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  let held = refs.length;
  for (let i = 0; i < 20 && held > 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    gc();
    held = refs.filter((r) => r.deref() !== undefined).length;
  }
  return held;
}

describe('lean HTTP/1.1 front', () => {
  it('serves keep-alive GET, POST with a body, HEAD and 204/304 framing on one connection, with forwarding headers', async () => {
    const { base, s } = await activeBoosterWithServer('lean-basic');
    const client = new Client(base, { pipelining: 1, connections: 1 } as never);
    cleanups.push(() => client.close());
    const g = await client.request({ method: 'GET', path: '/hello?x=1', headers: { 'x-request-id': 'lean-1' } });
    expect(g.statusCode).toBe(200);
    expect(g.headers['x-booster-upstream']).toBe('lean-basic-s');
    expect(await g.body.json()).toMatchObject({ server: 'lean-basic-s', method: 'GET' });
    const body = Buffer.alloc(1024, 'x');
    const p = await client.request({ method: 'POST', path: '/post', body, headers: { 'content-type': 'text/plain' } });
    expect(p.statusCode).toBe(200);
    expect(await p.body.json()).toMatchObject({ method: 'POST', bytes: 1024 });
    const h = await client.request({ method: 'HEAD', path: '/head' });
    expect(h.statusCode).toBe(200);
    expect(await h.body.text()).toBe('');
    const again = await client.request({ method: 'GET', path: '/after-head' });
    expect(await again.body.json()).toMatchObject({ method: 'GET' });
    const seen = s.seen.find((x) => x.url === '/hello?x=1')!;
    expect(seen.headers['x-request-id']).toBe('lean-1');
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-host']).toBe(new URL(base).host);
    expect(s.seen.find((x) => x.url === '/post')!.bytes).toBe(1024);
  });

  it('refuses every request-smuggling and malformed-head case with 400 (431 for a huge head), closes, and forwards nothing', async () => {
    const { base, s } = await activeBoosterWithServer('lean-smuggle');
    const tail = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    const cases: [string, string][] = [
      ['CL + TE', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${tail}`],
      ['TE + CL', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${tail}`],
      ['two different Content-Length', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd${tail}`],
      ['signed Content-Length', `POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd${tail}`],
      ['obs-fold', `GET /a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n${tail}`],
      ['bare CR in a header', `GET /a HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n${tail}`],
      ['NUL in a header', `GET /a HTTP/1.1\r\nHost: x\r\nX-Bad: a\u0000b\r\n\r\n${tail}`],
      ['space before the colon', `GET /a HTTP/1.1\r\nHost: x\r\nContent-Length : 4\r\n\r\nabcd${tail}`],
      ['chunked not last', `POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n${tail}`],
      ['HTTP/1.1 without Host', `GET /a HTTP/1.1\r\nX-Any: 1\r\n\r\n${tail}`],
      ['two Host headers', `GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n${tail}`],
    ];
    for (const [name, bytes] of cases) {
      const answer = await rawExchange(base, bytes);
      expect(statusLines(answer), name).toEqual(['HTTP/1.1 400 Bad Request']);
      expect(
        s.seen.filter((x) => x.url === '/smuggled' || x.url === '/a'),
        name,
      ).toEqual([]);
    }
    const huge = await rawExchange(base, `GET /a HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(statusLines(huge)).toEqual(['HTTP/1.1 431 Request Header Fields Too Large']);
    expect(s.seen.filter((x) => x.url === '/smuggled' || x.url === '/a')).toEqual([]);
  });

  it('hands a connection to node:http at a request boundary: control call, Expect, chunked upload, pipelined requests; order and bytes kept', async () => {
    const { base, s } = await activeBoosterWithServer('lean-handover');
    // A plain GET (lean), then the control plane (node:http), then a plain GET again: three answers in order.
    const u = new URL(base);
    const sock = connect(Number(u.port), u.hostname);
    cleanups.push(async () => sock.destroy());
    const received: Buffer[] = [];
    sock.on('data', (d: Buffer) => received.push(d));
    const text = () => Buffer.concat(received).toString('latin1');
    sock.write('GET /first HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => statusLines(text()).length === 1, { what: 'first answer' });
    sock.write('GET /_booster/active HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => statusLines(text()).length === 2, { what: 'control answer' });
    sock.write('GET /third HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => statusLines(text()).length === 3, { what: 'third answer' });
    expect(statusLines(text())).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(text()).toContain('"server":"lean-handover-s"');
    sock.destroy();

    // Pipelined: three requests in one write; the second and third wait for node:http, answers in order.
    const piped = await rawExchange(
      base,
      'GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    );
    expect(statusLines(piped)).toEqual(['HTTP/1.1 200 OK', 'HTTP/1.1 200 OK', 'HTTP/1.1 200 OK']);
    expect(piped.indexOf('"method":"GET"')).toBeLessThan(piped.indexOf('"method":"POST","bytes":3'));
    expect(
      s.seen
        .filter((x) => x.url.startsWith('/p'))
        .map((x) => `${x.url}:${x.bytes}`)
        .sort(),
    ).toEqual(['/p1:0', '/p2:3', '/p3:0']);

    // Expect: 100-continue and a chunked upload go to node:http, which answers 100 and streams.
    const expectAnswer = await rawExchange(
      base,
      'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello',
    );
    expect(statusLines(expectAnswer)).toEqual(['HTTP/1.1 100 Continue', 'HTTP/1.1 200 OK']);
    const chunked = await rawExchange(
      base,
      'POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n',
    );
    expect(statusLines(chunked)).toEqual(['HTTP/1.1 200 OK']);
    expect(chunked).toContain('"bytes":7');
  });

  it('streams a large download to a slow reader with backpressure all the way to the server, and frees the slot when the reader leaves', async () => {
    const { b, base, s } = await activeBoosterWithServer('lean-big');
    const total = 32 * 1024 * 1024;
    const u = new URL(base);
    const sock = connect(Number(u.port), u.hostname);
    cleanups.push(async () => sock.destroy());
    sock.pause(); // read nothing for now: the kernel buffers fill, then the booster's, then it must stop reading the server
    sock.write(`GET /big?bytes=${total} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await waitFor(() => s.bigStalls > 0, { what: 'the server sees backpressure' });
    // While the client reads nothing, the server's writes stop short of the whole body: the
    // booster holds a bounded amount (socket buffers), not the download.
    let last = -1;
    await waitFor(
      async () => {
        const now = s.bigWritten;
        const still = now === last;
        last = now;
        await new Promise((r) => setTimeout(r, 100));
        return still;
      },
      { what: 'the server stalls', timeoutMs: 10_000 },
    );
    expect(s.bigWritten).toBeLessThan(total / 2);
    let received = 0;
    let headEnd = -1;
    let head = '';
    await new Promise<void>((resolve, reject) => {
      sock.on('data', (d: Buffer) => {
        if (headEnd < 0) {
          head += d.toString('latin1');
          headEnd = head.indexOf('\r\n\r\n');
          if (headEnd >= 0) received = Buffer.byteLength(head, 'latin1') - headEnd - 4;
        } else received += d.length;
        if (received >= total) resolve();
      });
      sock.on('error', reject);
      sock.resume();
    });
    expect(head.startsWith('HTTP/1.1 200 OK')).toBe(true);
    expect(head.toLowerCase()).toContain(`content-length: ${total}`);
    expect(received).toBe(total);

    // A reader that goes away mid-download: the upstream request is aborted and the slot freed.
    const gone = connect(Number(u.port), u.hostname);
    gone.pause();
    gone.write(`GET /big?bytes=${total} HTTP/1.1\r\nHost: x\r\n\r\n`);
    await waitFor(() => b.table.routable[0]?.inflight === 1, { what: 'download in flight' });
    gone.destroy();
    await waitFor(() => b.table.routable[0]?.inflight === 0, { what: 'slot freed' });
  });

  it('answers an HTTP/1.0 client without chunking: a body of unknown length ends with the connection', async () => {
    const { base } = await activeBoosterWithServer('lean-http10');
    // The server answers chunked; an HTTP/1.0 client cannot read chunks, so the booster closes instead, even when asked to keep it.
    const answer = await rawExchange(base, 'GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    expect(statusLines(answer)).toEqual(['HTTP/1.1 200 OK']);
    expect(answer.toLowerCase()).toContain('connection: close');
    expect(answer.toLowerCase()).not.toContain('transfer-encoding');
    expect(answer.endsWith('{"server":"lean-http10-s","method":"GET","bytes":0}')).toBe(true);
    // A client that half-closes after its request still gets the whole answer, then the close.
    let boosterClosed = false;
    const halfClosed = await rawExchange(base, 'GET /half HTTP/1.1\r\nHost: x\r\n\r\n', {
      halfClose: true,
      endAfterMs: 3000,
      onServerEnd: () => (boosterClosed = true),
    });
    expect(statusLines(halfClosed)).toEqual(['HTTP/1.1 200 OK']);
    expect(boosterClosed).toBe(true);
    expect(halfClosed).toContain('"method":"GET"');
  });

  it('a client that half-closes after a complete request gets its answer on the node:http paths too (hand-over, and the lean path off)', async () => {
    // As HAProxy and nginx do: FIN after a whole request means "no more requests", not "cancel this one".
    const chunked = 'POST /half-chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
    const first = await activeBoosterWithServer('half-handover');
    const handedOver = await rawExchange(first.base, chunked, { halfClose: true, endAfterMs: 3000 });
    expect(statusLines(handedOver)).toEqual(['HTTP/1.1 200 OK']);
    expect(handedOver).toContain('"method":"POST","bytes":5');
    // The next booster leads on the same database once this one is gone.
    await first.b.close();

    const b = createBooster({ config: boosterConfig('half-node-http', { OMFLOW_BOOSTER_LEAN_HTTP1: false }), db: suite.db.db, log: silentLog });
    const nodeBase = await b.listen();
    cleanups.push(() => b.close());
    await waitFor(() => b.role() === 'active', { what: 'booster active' });
    const s = await startFixtureServer({ id: 'half-node-http-s', boosters: [nodeBase], knex: suite.db.knex });
    cleanups.push(() => s.stop());
    await s.heartbeatNow();
    await waitFor(() => b.table.routable.length >= 1, { what: 'server routable' });
    let boosterClosed = false;
    const plain = await rawExchange(nodeBase, 'GET /half HTTP/1.1\r\nHost: x\r\n\r\n', {
      halfClose: true,
      endAfterMs: 3000,
      onServerEnd: () => (boosterClosed = true),
    });
    expect(statusLines(plain)).toEqual(['HTTP/1.1 200 OK']);
    expect(boosterClosed).toBe(true);
    expect((await rawExchange(nodeBase, chunked, { halfClose: true, endAfterMs: 3000 })).includes('"method":"POST","bytes":5')).toBe(true);
    // A body cut by the FIN is still refused, and the connection closed (it is not a complete request).
    const cut = await rawExchange(nodeBase, 'POST /cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part', { halfClose: true, endAfterMs: 3000 });
    expect(statusLines(cut)).toEqual(['HTTP/1.1 400 Bad Request']);
  });
});

describe('lean HTTP/1.1 upstream client', () => {
  const servers: Server[] = [];
  afterAll(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  });

  /** A loopback server; `connections` is the most it had open at once. */
  async function upstream(handler: Parameters<typeof createServer>[1]): Promise<{ origin: string; connections: () => number }> {
    const s = createServer(handler);
    let open = 0;
    let n = 0;
    s.on('connection', (c: Socket) => {
      n = Math.max(n, ++open);
      c.on('close', () => open--);
    });
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return { origin: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, connections: () => n };
  }

  const OPTS = { connectTimeoutMs: 500, headersTimeoutMs: 300, idleTimeoutMs: 1000, keepAliveMs: 2000, connectionsPerServer: 2 };

  /** One request through the pool; resolves with what the handler saw. */
  function send(pool: Http1Pool, method: string, path: string, body: Buffer | null = null) {
    return new Promise<{ status: number; headers: string[]; body: string; error?: Error & { code?: string } }>((resolve) => {
      const chunks: Buffer[] = [];
      let status = 0;
      let headers: string[] = [];
      const h: Http1Handler = {
        onConnect: () => {},
        onHeaders: (st, hs) => {
          if (st >= 200) {
            status = st;
            headers = hs;
          }
          return true;
        },
        onData: (c) => {
          chunks.push(c);
          return true;
        },
        onComplete: () => resolve({ status, headers, body: Buffer.concat(chunks).toString() }),
        onError: (error) => resolve({ status, headers, body: '', error }),
      };
      pool.dispatch({ method, path, headers: ['x-test', '1'], body }, h);
    });
  }

  it('reuses keep-alive connections, holds to the connection limit, frames chunked, close-delimited, 1xx and HEAD answers', async () => {
    const up = await upstream((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/chunked') {
          res.write('ab');
          setTimeout(() => res.end('cd'), 5);
        } else if (req.url === '/early-hints') {
          res.writeEarlyHints({ link: '</a.css>; rel=preload' });
          res.end('final');
        } else if (req.url === '/slow') setTimeout(() => res.end('slow'), 30);
        else res.end(`${req.method} ${req.headers.host} ${req.headers['x-test']} ${Buffer.concat(chunks).length}`);
      });
    });
    const pool = new Http1Pool(up.origin, OPTS);
    cleanups.push(() => pool.destroy());
    for (let i = 0; i < 3; i++) expect((await send(pool, 'GET', '/')).body).toBe(`GET ${new URL(up.origin).host} 1 0`);
    expect(up.connections()).toBe(1);
    expect((await send(pool, 'POST', '/', Buffer.from('hello'))).body).toMatch(/^POST .* 5$/);
    expect((await send(pool, 'GET', '/chunked')).body).toBe('abcd');
    expect(await send(pool, 'GET', '/early-hints')).toMatchObject({ status: 200, body: 'final' });
    expect(await send(pool, 'HEAD', '/')).toMatchObject({ status: 200, body: '' });
    const many = await Promise.all(Array.from({ length: 6 }, () => send(pool, 'GET', '/slow')));
    expect(many.map((r) => r.body)).toEqual(Array(6).fill('slow'));
    expect(up.connections()).toBeLessThanOrEqual(2);

    const raw = await upstream((_req, res) => {
      // HTTP/1.0-style: no length, the body ends with the connection.
      res.socket!.end('HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil-close');
    });
    const rawPool = new Http1Pool(raw.origin, OPTS);
    cleanups.push(() => rawPool.destroy());
    expect(await send(rawPool, 'GET', '/')).toMatchObject({ status: 200, body: 'until-close' });
    expect(await send(rawPool, 'GET', '/')).toMatchObject({ status: 200, body: 'until-close' });
  });

  it('lets go of every connection the server closed (each parser held its connection for good)', async () => {
    const up = await upstream((_req, res) => {
      res.setHeader('connection', 'close');
      res.end('once');
    });
    const pool = new Http1Pool(up.origin, OPTS);
    cleanups.push(() => pool.destroy());
    // A connection's resume callback is handed to every answer's onHeaders: held as long as the connection is.
    const conns: WeakRef<() => void>[] = [];
    for (let i = 0; i < 20; i++) {
      const body = await new Promise<string>((resolve, reject) => {
        let text = '';
        pool.dispatch(
          { method: 'GET', path: '/', headers: [], body: null },
          {
            onConnect: () => {},
            onHeaders: (_status, _headers, resume) => {
              conns.push(new WeakRef(resume));
              return true;
            },
            onData: (c) => {
              text += c.toString();
              return true;
            },
            onComplete: () => resolve(text),
            onError: reject,
          },
        );
      });
      expect(body).toBe('once');
    }
    expect(new Set(conns.map((r) => r.deref())).size).toBe(20); // a new connection each time
    expect(await stillHeld(conns)).toBe(0);
  });

  it('fails with undici codes (refused connect, headers timeout, a reset mid-answer) and drops connections the server closed', async () => {
    const refusedPool = new Http1Pool('http://127.0.0.1:1', OPTS);
    expect((await send(refusedPool, 'GET', '/')).error?.code).toBe('ECONNREFUSED');
    const neverAnswers = await upstream(() => {});
    const silent = new Http1Pool(neverAnswers.origin, OPTS);
    cleanups.push(() => silent.destroy());
    expect((await send(silent, 'GET', '/')).error?.code).toBe('UND_ERR_HEADERS_TIMEOUT');

    const cut = await upstream((_req, res) => {
      res.writeHead(200, { 'content-length': 100 });
      res.write('partial');
      setTimeout(() => res.socket?.destroy(), 10);
    });
    const cutPool = new Http1Pool(cut.origin, OPTS);
    cleanups.push(() => cutPool.destroy());
    const r = await send(cutPool, 'GET', '/');
    expect(r.status).toBe(200);
    expect(r.error?.code).toBe('UND_ERR_SOCKET');

    // An idle connection closed by the server is dropped: the next request opens a new one.
    const shortKeepAlive = await upstream((_req, res) => res.end('ok'));
    const ka = new Http1Pool(shortKeepAlive.origin, OPTS);
    cleanups.push(() => ka.destroy());
    expect((await send(ka, 'GET', '/')).body).toBe('ok');
    for (const s of servers) s.closeIdleConnections();
    await new Promise((res) => setTimeout(res, 50));
    expect(await send(ka, 'GET', '/')).toMatchObject({ status: 200, body: 'ok' });
  });
});

describe('lean HTTP/1.1 front: connection timeouts and graceful close', () => {
  /** A node:http server with the lean front and short timeouts; /hold answers when released. */
  async function leanServer(): Promise<{ port: number; server: Server; release: () => void }> {
    const held: LeanResponse[] = [];
    const answer = (res: LeanResponse) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
      res.end('ok');
    };
    const server = createServer();
    attachLeanFront(server, {
      onRequest: (req: LeanRequest, res: LeanResponse) => (req.url === '/hold' ? held.push(res) : answer(res)),
      handsOver: () => false,
      maxHeldBodyBytes: 1024,
      keepAliveTimeoutMs: 300,
      headersTimeoutMs: 200,
      bodyTimeoutMs: 400,
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    return { port: (server.address() as AddressInfo).port, server, release: () => held.splice(0).forEach(answer) };
  }

  /** A client connection that records what it receives and when the server closed it. */
  function client(port: number) {
    const sock = connect(port, '127.0.0.1');
    cleanups.push(async () => sock.destroy());
    const state = { text: '', closed: false };
    sock.on('data', (d: Buffer) => (state.text += d.toString('latin1')));
    sock.on('close', () => (state.closed = true));
    sock.on('error', () => {});
    return { sock, state };
  }

  it('answers 408 and closes a head that never completes (slow-loris), and closes idle keep-alive connections', async () => {
    const { port } = await leanServer();
    const slow = client(port);
    slow.sock.write('GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    await waitFor(() => slow.state.closed, { what: 'slow head closed', timeoutMs: 5000 });
    expect(statusLines(slow.state.text)).toEqual(['HTTP/1.1 408 Request Timeout']);

    const idle = client(port);
    idle.sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => statusLines(idle.state.text).length === 1, { what: 'answer' });
    expect(idle.state.closed).toBe(false);
    await waitFor(() => idle.state.closed, { what: 'idle connection closed after the keep-alive timeout', timeoutMs: 5000 });
  });

  it('lets go of every connection it is done with, served, refused or handed to node:http (each parser held its connection for good)', async () => {
    const server = createServer((_req, res) => res.end('node'));
    attachLeanFront(server, {
      onRequest: (_req: LeanRequest, res: LeanResponse) => {
        res.writeHead(200, { 'content-length': 2 });
        res.end('ok');
      },
      handsOver: (url) => url === '/node',
      maxHeldBodyBytes: 1024,
      keepAliveTimeoutMs: 5000,
      headersTimeoutMs: 5000,
      bodyTimeoutMs: 0,
    });
    const sockets: WeakRef<Socket>[] = [];
    server.on('connection', (s: Socket) => sockets.push(new WeakRef(s)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const kinds = [
      ['GET /lean HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'HTTP/1.1 200 OK'],
      ['POST /lean HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc', 'HTTP/1.1 200 OK'],
      ['GET /refused HTTP/1.1\r\nConnection: close\r\n\r\n', 'HTTP/1.1 400 Bad Request'],
      ['GET /node HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'HTTP/1.1 200 OK'],
    ];
    for (let i = 0; i < 10; i++) for (const [bytes, status] of kinds) expect(statusLines(await rawExchange(base, bytes))).toEqual([status]);
    expect(sockets.length).toBe(40);
    expect(await stillHeld(sockets)).toBe(0);
  });

  it('closeIdleConnections closes idle connections and leaves one with a request in progress until its answer', async () => {
    const { port, server, release } = await leanServer();
    const idle = client(port);
    idle.sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const busy = client(port);
    busy.sock.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => statusLines(idle.state.text).length === 1, { what: 'idle answered' });
    server.closeIdleConnections();
    await waitFor(() => idle.state.closed, { what: 'idle closed' });
    expect(busy.state.closed).toBe(false);
    release();
    await waitFor(() => statusLines(busy.state.text).length === 1, { what: 'held request answered' });
    expect(busy.state.text).toContain('ok');
  });
});
