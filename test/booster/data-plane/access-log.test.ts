import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../../booster/booster.js';
import { AccessLog, type AccessRecord } from '../../../booster/data-plane/access-log.js';
import { waitFor } from '../../helpers/poll.js';
import { boosterConfig, boosterSuiteDatabase, type FixtureServer, silentLog, startFixtureServer } from '../fixtures.js';

/**
 * The access log of the data plane, read back from its file: one line per request with the
 * fields an operator looks for, the booster's own answers included, the filters, the combined
 * format, every data-plane worker writing, and SIGUSR1 reopening the file after logrotate.
 */
const suite = boosterSuiteDatabase();
const { cleanups } = suite;
const dir = mkdtempSync(join(tmpdir(), 'omflow-access-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileSeq = 0;

type Line = Record<string, unknown> & { path: string; status: number; traceId: string; requestId: string };

async function start(id: string, overrides: Record<string, string | number | boolean> = {}): Promise<Booster & { base: string; file: string }> {
  const file = join(dir, `access-${++fileSeq}.log`);
  const b = createBooster({
    config: boosterConfig(id, { OMFLOW_BOOSTER_ACCESS_LOG: 'json', OMFLOW_BOOSTER_ACCESS_LOG_FILE: file, ...overrides }),
    db: suite.db.db,
    log: silentLog,
  });
  const base = await b.listen();
  cleanups.push(() => b.close());
  await waitFor(() => b.role() === 'active', { what: 'booster active' });
  return Object.assign(b, { base, file });
}

async function servers(base: string, ids: string[]): Promise<FixtureServer[]> {
  const out: FixtureServer[] = [];
  for (const id of ids) {
    const f = await startFixtureServer({ id, boosters: [base], knex: suite.db.knex });
    cleanups.push(() => f.stop());
    await f.heartbeatNow();
    out.push(f);
  }
  return out;
}

function readLines(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean);
}

/** The lines of the file once it holds `n` (the log is written asynchronously, within an event-loop turn or two). */
async function lines(file: string, n: number): Promise<Line[]> {
  const got = await waitFor(
    () => {
      const l = readLines(file);
      return l.length >= n ? l : null;
    },
    { what: `${n} access-log lines in ${file}` },
  );
  return got!.map((l) => JSON.parse(l) as Line);
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text };
}

const workers = Number(process.env.OMFLOW_TEST_BOOSTER_WORKERS ?? 1);

describe('booster access log', () => {
  it('writes one JSON line per request: ids, client, method, path, status, bytes, server, timings, epoch, and the booster’s own codes', async () => {
    const b = await start('al-fields');
    const [s] = await servers(b.base, ['al1']);
    await waitFor(() => b.table.routable.length === 1, { what: 'server routable' });

    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const plain = await get(`${b.base}/hello?token=secret&page=2`, { 'x-request-id': 'rid-al-1', traceparent, tracestate: 'vendor=1' });
    expect(plain.status).toBe(200);
    const posted = await request(`${b.base}/submit`, { method: 'POST', body: Buffer.alloc(1000, 'p'), headers: { 'content-type': 'text/plain' } });
    expect(posted.statusCode).toBe(200);
    const postedBody = await posted.body.text();
    // A chunked upload is streamed (no Content-Length): its bytes are counted as they pass.
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(`${b.base}/upload`, { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write(Buffer.alloc(10_000, 'u'));
      req.end();
    });
    expect(streamed).toBe(200);
    const internal = await get(`${b.base}/_internal/steps/dispatch`);
    expect(internal.status).toBe(403);

    const [l1, l2, l3, l4] = await lines(b.file, 4);
    // The upstream saw the same trace the log shows: the client's traceparent and tracestate passed through unchanged.
    const seen = s.seen.find((x) => x.url.startsWith('/hello'))!;
    expect(seen.headers.traceparent).toBe(traceparent);
    expect(seen.headers.tracestate).toBe('vendor=1');
    expect(l1).toMatchObject({
      msg: 'access',
      node: 'al-fields',
      requestId: 'rid-al-1',
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      client: '127.0.0.1',
      method: 'GET',
      path: '/hello?token=[redacted]&page=[redacted]',
      status: 200,
      bytesIn: 0,
      bytesOut: Buffer.byteLength(plain.text),
      server: 'al1',
      attempts: 1,
      queueMs: 0,
      epoch: b.epoch(),
      code: null,
    });
    expect(l1.retries).toBeUndefined();
    expect(typeof l1.time).toBe('string');
    for (const k of ['connectMs', 'headersMs', 'totalMs'] as const) expect(typeof l1[k]).toBe('number');
    expect(l1.totalMs as number).toBeGreaterThanOrEqual(l1.headersMs as number);
    // A request without a traceparent starts a trace: the upstream got it, the log has its id.
    const postSeen = s.seen.find((x) => x.url === '/submit')!;
    expect(String(postSeen.headers.traceparent)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(l2).toMatchObject({ method: 'POST', path: '/submit', status: 200, bytesIn: 1000, bytesOut: Buffer.byteLength(postedBody), server: 'al1' });
    expect(String(postSeen.headers.traceparent).slice(3, 35)).toBe(l2.traceId);
    expect(l2.requestId).toBe(postSeen.headers['x-request-id']);
    expect(l3).toMatchObject({ method: 'POST', path: '/upload', status: 200, bytesIn: 100_000, server: 'al1' });
    // The booster's own answer: no server, its code, a trace id all the same.
    expect(l4).toMatchObject({ path: '/_internal/steps/dispatch', status: 403, server: null, attempts: 0, code: 'BOOSTER_ERR_INTERNAL_PATH', headersMs: null });
    expect(l4.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(readLines(b.file)).toHaveLength(4); // nothing for the heartbeats and health checks of the control plane
  });

  it('a request whose client went away is logged with status 0; a WebSocket tunnel is one line when it closes', async () => {
    const b = await start('al-ends');
    const [s] = await servers(b.base, ['al-w1']);
    await waitFor(() => b.table.routable.length === 1, { what: 'server routable' });
    // The client gives up (a reset) while the server holds the request: no answer was sent.
    const { port } = new URL(b.base);
    const gone = connect(Number(port), '127.0.0.1');
    gone.on('error', () => {});
    gone.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => s.seen.some((x) => x.url === '/hold'), { what: 'the held request reached the server' });
    gone.resetAndDestroy();
    const [abandoned] = await lines(b.file, 1);
    expect(abandoned).toMatchObject({ path: '/hold', status: 0, server: 'al-w1', headersMs: null, code: null });
    s.release();

    const socket = connect(Number(port), '127.0.0.1');
    await new Promise<void>((r) => socket.once('connect', () => r()));
    socket.write(`GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    await new Promise<void>((r) => socket.once('data', () => r()));
    socket.write('ping');
    await new Promise<void>((r) => socket.once('data', () => r()));
    socket.resetAndDestroy();
    const [, tunnel] = await lines(b.file, 2);
    expect(tunnel).toMatchObject({ path: '/ws', status: 101, server: 'al-w1', attempts: 1 });
    expect(tunnel.bytesIn as number).toBeGreaterThan(4);
    expect(tunnel.bytesOut as number).toBeGreaterThan(4);
  });

  it('names the server given up on and why when a request is retried on another', async () => {
    const b = await start('al-retry');
    const [a] = await servers(b.base, ['al-a', 'al-b']);
    await waitFor(() => b.table.routable.length === 2, { what: 'both routable' });
    // al-a resets the connection of its next /reset-once; the GET is retried on al-b. Which server is
    // picked first is the balancer's choice: ask until al-a got one.
    a.resets = 1;
    for (let i = 0; i < 40 && a.resets > 0; i++) expect((await get(`${b.base}/reset-once`)).status).toBe(200);
    expect(a.resets).toBe(0);
    // Lines are written off the hot path: the retried request's may come a moment after its answer.
    const retried = await waitFor(
      () =>
        readLines(b.file)
          .map((l) => JSON.parse(l) as Line)
          .find((l) => l.retries !== undefined),
      { what: 'the retried request logged' },
    );
    expect(retried).toMatchObject({ status: 200, attempts: 2, server: 'al-b', retries: [{ server: 'al-a', reason: 'reset' }] });
  });

  it('filters: a status floor keeps the errors only', async () => {
    const errorsOnly = await start('al-errors', { OMFLOW_BOOSTER_ACCESS_LOG_MIN_STATUS: 500 });
    await servers(errorsOnly.base, ['al-e1']);
    await waitFor(() => errorsOnly.table.routable.length === 1, { what: 'routable' });
    for (let i = 0; i < 5; i++) await get(`${errorsOnly.base}/ok-${i}`);
    expect((await get(`${errorsOnly.base}/fail`)).status).toBe(503);
    expect((await get(`${errorsOnly.base}/_internal/x`)).status).toBe(403);
    const [only] = await lines(errorsOnly.file, 1);
    expect(only).toMatchObject({ path: '/fail', status: 503, server: 'al-e1' });
    // One more error flushes behind the first: nothing else was written in between.
    await get(`${errorsOnly.base}/fail`);
    expect((await lines(errorsOnly.file, 2)).map((l) => l.path)).toEqual(['/fail', '/fail']);
  });

  it('sampling: an even share of the requests, counted per data-plane process', async () => {
    // The credit counter is per process: one data-plane process, so exactly every other request.
    const sampled = await start('al-sample', { OMFLOW_BOOSTER_ACCESS_LOG_SAMPLE_PERCENT: 50, OMFLOW_BOOSTER_WORKERS: 1 });
    await servers(sampled.base, ['al-s1']);
    await waitFor(() => sampled.table.routable.length === 1, { what: 'routable' });
    for (let i = 1; i <= 10; i++) await get(`${sampled.base}/n${i}`);
    expect((await lines(sampled.file, 5)).map((l) => l.path)).toEqual(['/n2', '/n4', '/n6', '/n8', '/n10']);
  });

  it('combined format: the NCSA combined line, then the same fields as key=value', async () => {
    const b = await start('al-combined', { OMFLOW_BOOSTER_ACCESS_LOG: 'combined', OMFLOW_BOOSTER_ACCESS_LOG_QUERY: 'drop' });
    await servers(b.base, ['al-c1']);
    await waitFor(() => b.table.routable.length === 1, { what: 'routable' });
    const r = await get(`${b.base}/page?q=1`, { referer: 'http://example.test/from', 'user-agent': 'test "agent"', 'x-request-id': 'rid-c' });
    const [line] = (await waitFor(
      () => {
        const l = readLines(b.file);
        return l.length ? l : null;
      },
      { what: 'a combined line' },
    ))!;
    expect(line).toMatch(
      new RegExp(
        `^127\\.0\\.0\\.1 - - \\[\\d{2}/[A-Z][a-z]{2}/\\d{4}:\\d{2}:\\d{2}:\\d{2} \\+0000\\] "GET /page HTTP/1\\.1" 200 ${Buffer.byteLength(r.text)} "http://example\\.test/from" "test \\\\x22agent\\\\x22" rid="rid-c" trace=[0-9a-f]{32} server=al-c1 attempts=1 retries=- in=0 queue_ms=0 connect_ms=[\\d.]+ headers_ms=[\\d.]+ total_ms=[\\d.]+ epoch=\\d+ code=- node=al-combined$`,
      ),
    );
  });

  it('every data-plane worker writes its lines, and SIGUSR1 reopens the file logrotate moved away', async () => {
    const b = await start('al-rotate', { OMFLOW_BOOSTER_WORKERS: Math.max(2, workers) });
    await servers(b.base, ['al-r1']);
    await waitFor(() => b.table.routable.length === 1, { what: 'routable' });
    // Separate connections, so the kernel may hand them to different workers.
    for (let i = 0; i < 6; i++) await get(`${b.base}/before-${i}`, { connection: 'close' });
    const before = await lines(b.file, 6);
    expect(before.map((l) => l.path).sort()).toEqual([0, 1, 2, 3, 4, 5].map((i) => `/before-${i}`));
    // Written by the workers, not by the primary (this process).
    expect(before.every((l) => l.pid !== process.pid)).toBe(true);

    renameSync(b.file, `${b.file}.1`);
    process.kill(process.pid, 'SIGUSR1');
    // A worker may get its reopen a little after the signal: write until the new file has lines from every request after it.
    await waitFor(() => existsSync(b.file), { what: 'the access log reopened at its path' });
    for (let i = 0; i < 6; i++) await get(`${b.base}/after-${i}`, { connection: 'close' });
    const after = (await waitFor(
      () => {
        const moved = readLines(`${b.file}.1`).map((l) => (JSON.parse(l) as Line).path);
        const fresh = readLines(b.file).map((l) => (JSON.parse(l) as Line).path);
        return moved.length + fresh.length >= 12 ? { moved, fresh } : null;
      },
      { what: 'twelve lines over both files' },
    ))!;
    // Nothing lost or doubled; the lines before the signal stay in the moved file, the new file has only later ones.
    expect(after.moved.filter((p) => p.startsWith('/before-'))).toHaveLength(6);
    expect([...after.moved, ...after.fresh].filter((p) => p.startsWith('/after-'))).toHaveLength(6);
    expect(after.fresh.some((p) => p.startsWith('/after-'))).toBe(true);
    expect(after.fresh.some((p) => p.startsWith('/before-'))).toBe(false);
  });

  it('chunks: many lines across chunks in order, a line longer than a chunk whole, non-ASCII escaped, every line parses', async () => {
    const file = join(dir, 'chunks.log');
    const log = new AccessLog({ format: 'json', file, minStatus: 0, slowMs: 0, query: 'keep' }, silentLog, 'al-chunks');
    const record = (path: string): AccessRecord => ({
      req: { method: 'GET', url: path, httpVersionMajor: 1, httpVersionMinor: 1, socket: { remoteAddress: '127.0.0.1' }, headers: {} },
      requestId: 'r',
      traceId: '0af7651916cd43dd8448eb211c80319c',
      epoch: 1,
      server: 'svc',
      attempts: 1,
      retries: null,
      queueMs: 0,
      connectMs: 0.1,
      headersMs: 0.2,
      bytesIn: 0,
      bytesOut: 1,
      code: null,
    });
    // Longer than a file's chunk (512 KiB).
    const long = `/long/${'x'.repeat(600_000)}`;
    const paths: string[] = [];
    // More than one chunk in one event-loop turn, then the long line, then more in later turns.
    for (let i = 0; i < 3_000; i++) paths.push(`/a/${i}`);
    paths.push(long, '/é/ü?q=日本', '/tab\there');
    for (const p of paths) log.record(record(p), 200, 1);
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 300; i++) {
      paths.push(`/b/${i}`);
      log.record(record(`/b/${i}`), 200, 1);
    }
    await log.close();
    const raw = readFileSync(file);
    // ASCII only: multi-byte text is escaped, so the file's bytes are its characters.
    expect(raw.every((byte) => byte < 0x80)).toBe(true);
    const got = raw
      .toString('latin1')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as Line).path);
    expect(got).toEqual(paths);
    expect(log.dropped).toBe(0);
  });
});
