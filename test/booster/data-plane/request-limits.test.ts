import { execFileSync } from 'node:child_process';
import cluster from 'node:cluster';
import { mkdtempSync, rmSync } from 'node:fs';
import { type ClientHttp2Session, connect as h2connect } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../../booster/booster.js';
import { waitFor } from '../../helpers/poll.js';
import { boosterConfig, boosterSuiteDatabase, type FixtureServer, silentLog, startFixtureServer } from '../fixtures.js';

/**
 * Whole-request limits (issue 20): a body must arrive within OMFLOW_BOOSTER_BODY_TIMEOUT_MS of its
 * head and be no larger than OMFLOW_BOOSTER_MAX_BODY_BYTES, on every path a body can take: the
 * lean HTTP/1.1 front (held bodies), node:http (chunked), HTTP/1.1 over TLS and HTTP/2. And
 * requests no path may pass on (an HTTP/1 line claiming HTTP/2.0, a repeated Host) are refused
 * alike, without harming the process.
 */
const suite = boosterSuiteDatabase();
const { cleanups } = suite;
const LIMITS = { OMFLOW_BOOSTER_BODY_TIMEOUT_MS: 800, OMFLOW_BOOSTER_MAX_BODY_BYTES: 4096 };
let dir: string;
let tls: { OMFLOW_BOOSTER_TLS_CERT_FILE: string; OMFLOW_BOOSTER_TLS_KEY_FILE: string };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'omflow-limits-'));
  tls = { OMFLOW_BOOSTER_TLS_CERT_FILE: join(dir, 'b.crt'), OMFLOW_BOOSTER_TLS_KEY_FILE: join(dir, 'b.key') };
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'],
      ...['-keyout', tls.OMFLOW_BOOSTER_TLS_KEY_FILE, '-out', tls.OMFLOW_BOOSTER_TLS_CERT_FILE, '-subj', '/CN=localhost'],
    ],
    { stdio: 'ignore' },
  );
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function boosterWithServer(id: string, overrides: Record<string, string | number | boolean>): Promise<{ b: Booster; port: number; s: FixtureServer }> {
  const b = createBooster({ config: boosterConfig(id, { ...LIMITS, ...overrides }), db: suite.db.db, log: silentLog });
  const base = await b.listen();
  cleanups.push(() => b.close());
  await waitFor(() => b.role() === 'active', { what: 'booster active', timeoutMs: 15_000 });
  const s = await startFixtureServer({ id: `${id}-s`, boosters: [base.replace('https:', 'http:')], knex: suite.db.knex });
  cleanups.push(() => s.stop());
  await s.heartbeatNow();
  await waitFor(() => b.table.routable.length >= 1, { what: 'server routable', timeoutMs: 15_000 });
  return { b, port: Number(new URL(base).port), s };
}

interface RawAnswer {
  text: string;
  status: number;
  closed: boolean;
}

/**
 * Writes `head` and then the body pieces one every `everyMs` (a trickle), on a plain or TLS
 * socket, until the booster answers and closes or `giveUpMs` passes.
 */
function trickle(port: number, head: string, pieces: string[], opts: { everyMs: number; giveUpMs: number; tls?: boolean }): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const sock: Socket = opts.tls
      ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
      : connect(port, '127.0.0.1');
    let text = '';
    let timer: NodeJS.Timeout | undefined;
    const done = (closed: boolean) => {
      clearInterval(timer);
      clearTimeout(giveUp);
      sock.destroy();
      resolve({ text, status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), closed });
    };
    const giveUp = setTimeout(() => done(false), opts.giveUpMs);
    sock.on('data', (d) => (text += d.toString('latin1')));
    sock.on('error', () => {});
    sock.on('close', () => done(true));
    sock.once(opts.tls ? 'secureConnect' : 'connect', () => {
      sock.write(head);
      let i = 0;
      timer = setInterval(() => {
        if (i < pieces.length && !sock.destroyed) sock.write(pieces[i++]);
      }, opts.everyMs);
    });
  });
}

/** One HTTP/2 request on `session` whose body is written in pieces, one every `everyMs` (ended after them with `end`). */
function h2Trickle(session: ClientHttp2Session, pieces: Buffer[], everyMs: number, end = false): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': '/upload', 'content-type': 'application/octet-stream' }, { endStream: false });
    let status = 0;
    let body = '';
    let i = 0;
    const timer = setInterval(() => {
      if (stream.destroyed || stream.writableEnded) return;
      if (i < pieces.length) stream.write(pieces[i++]);
      else if (end) stream.end();
    }, everyMs);
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.setEncoding('utf8');
    stream.on('data', (c) => (body += c));
    const finish = () => {
      clearInterval(timer);
      resolve({ status, body });
    };
    stream.on('end', finish);
    stream.on('close', finish);
    stream.on('error', (err) => (status ? finish() : reject(err)));
  });
}

const code = (text: string) => /"code":"(\w+)"/.exec(text)?.[1];

describe('whole-request limits at the booster', () => {
  it('a body that trickles is answered 408 BOOSTER_ERR_BODY_TIMEOUT on the lean path and through node:http, and the connection closes', async () => {
    const { port, s } = await boosterWithServer('limits-plain', {});
    const drip = Array.from({ length: 40 }, () => 'x');
    // Held on the lean path (Content-Length within the replay limit).
    const held = await trickle(port, 'POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n', drip, { everyMs: 150, giveUpMs: 10_000 });
    expect({ status: held.status, code: code(held.text), closed: held.closed }).toEqual({ status: 408, code: 'BOOSTER_ERR_BODY_TIMEOUT', closed: true });
    // Chunked: handed to node:http and streamed to the server.
    const chunk = drip.map(() => '1\r\nx\r\n');
    const chunked = await trickle(port, 'POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n', chunk, { everyMs: 150, giveUpMs: 10_000 });
    expect({ status: chunked.status, code: code(chunked.text), closed: chunked.closed }).toEqual({
      status: 408,
      code: 'BOOSTER_ERR_BODY_TIMEOUT',
      closed: true,
    });
    // No request completed at the server; a body that comes in time passes.
    expect(s.seen.filter((r) => r.url === '/upload' && r.bytes === 40)).toEqual([]);
    const quick = await trickle(port, 'POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nConnection: close\r\n\r\n', ['ab', 'cd'], {
      everyMs: 50,
      giveUpMs: 5000,
    });
    expect(quick.status).toBe(200);
    expect(quick.text).toContain('"bytes":4');
  });

  it('a body larger than OMFLOW_BOOSTER_MAX_BODY_BYTES is answered 413 BOOSTER_ERR_BODY_TOO_LARGE: by its Content-Length, or as a chunked body grows', async () => {
    const { port, s } = await boosterWithServer('limits-size', {});
    const big = 'y'.repeat(5000);
    const byLength = await trickle(port, `POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: ${big.length}\r\n\r\n`, [big], { everyMs: 10, giveUpMs: 5000 });
    expect({ status: byLength.status, code: code(byLength.text) }).toEqual({ status: 413, code: 'BOOSTER_ERR_BODY_TOO_LARGE' });
    const pieces = Array.from({ length: 6 }, () => `3e8\r\n${'z'.repeat(1000)}\r\n`);
    const chunked = await trickle(port, 'POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n', pieces, { everyMs: 20, giveUpMs: 5000 });
    expect({ status: chunked.status, code: code(chunked.text), closed: chunked.closed }).toEqual({
      status: 413,
      code: 'BOOSTER_ERR_BODY_TOO_LARGE',
      closed: true,
    });
    expect(s.seen.filter((r) => r.url === '/upload' && r.bytes > 4096)).toEqual([]);
    const fits = await trickle(
      port,
      'POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
      ['3e8\r\n', `${'z'.repeat(1000)}\r\n0\r\n\r\n`],
      {
        everyMs: 20,
        giveUpMs: 5000,
      },
    );
    expect(fits.status).toBe(200);
  });

  it('HTTP/1.1 over TLS and HTTP/2 get the same limits; the HTTP/2 session stays usable', async () => {
    const { port, s } = await boosterWithServer('limits-tls', { ...tls, OMFLOW_BOOSTER_WORKERS: 1 });
    const slow = await trickle(port, 'POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\n\r\n', Array(40).fill('x'), {
      everyMs: 150,
      giveUpMs: 10_000,
      tls: true,
    });
    expect({ status: slow.status, code: code(slow.text), closed: slow.closed }).toEqual({ status: 408, code: 'BOOSTER_ERR_BODY_TIMEOUT', closed: true });
    const session = h2connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
    cleanups.push(async () => session.destroy());
    session.on('error', () => {});
    const h2slow = await h2Trickle(
      session,
      Array.from({ length: 40 }, () => Buffer.from('x')),
      150,
    );
    expect({ status: h2slow.status, code: code(h2slow.body) }).toEqual({ status: 408, code: 'BOOSTER_ERR_BODY_TIMEOUT' });
    // HTTP/2 without a Content-Length: counted as it streams.
    const h2big = await h2Trickle(
      session,
      Array.from({ length: 6 }, () => Buffer.alloc(1000, 'q')),
      20,
    );
    expect({ status: h2big.status, code: code(h2big.body) }).toEqual({ status: 413, code: 'BOOSTER_ERR_BODY_TOO_LARGE' });
    // The same session goes on: a body in time and within the limit passes.
    const h2ok = await h2Trickle(session, [Buffer.alloc(1000, 'q')], 10, true);
    expect({ status: h2ok.status, body: JSON.parse(h2ok.body) }).toMatchObject({ status: 200, body: { bytes: 1000 } });
    expect(session.destroyed).toBe(false);
    expect(s.seen.filter((r) => r.url === '/upload' && r.bytes > 4096)).toEqual([]);
  });
});

describe('requests no path passes on, refused alike', () => {
  const workerPids = () =>
    Object.values(cluster.workers ?? {})
      .filter((w) => w && !w.isDead())
      .map((w) => w!.process.pid)
      .sort();

  for (const workers of [1, 2])
    it(`an HTTP/1 request line claiming HTTP/2.0 is answered 505 and a repeated Host 400 with nothing read behind it (${workers === 1 ? 'one process' : 'data-plane workers'})`, async () => {
      const { port, s } = await boosterWithServer(`refuse-${workers}`, { OMFLOW_BOOSTER_WORKERS: workers });
      const before = workerPids();
      for (const lean of [true, false]) {
        // The lean path serves plain keep-alive requests; a pipelined one goes through node:http.
        const prefix = lean ? '' : 'GET /first HTTP/1.1\r\nHost: a\r\n\r\n';
        const v2 = await trickle(port, `${prefix}DELETE /x HTTP/2.0\r\nHost: a\r\n\r\n`, [], { everyMs: 10, giveUpMs: 3000 });
        expect(v2.text, `lean ${lean}`).toMatch(/HTTP\/1\.1 505 [^\r]*\r\n[\s\S]*BOOSTER_ERR_HTTP_VERSION/);
        const twoHosts = await trickle(port, `${prefix}GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n`, [], {
          everyMs: 10,
          giveUpMs: 3000,
        });
        expect(twoHosts.text, `lean ${lean}`).toMatch(/HTTP\/1\.1 400 /);
        expect(twoHosts.closed).toBe(true);
      }
      expect(s.seen.filter((r) => r.url === '/smuggled' || r.url === '/x')).toEqual([]);
      expect(workerPids()).toEqual(before);
    });
});
