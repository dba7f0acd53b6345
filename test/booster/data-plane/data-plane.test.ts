import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../../booster/booster.js';
import type { LicenseGate } from '../../../booster/license/gate.js';
import { audienceOf, signClusterRequest } from '../../../common/protocol/cluster-auth.js';
import { BOOSTER_PATH, HEADER } from '../../../common/protocol/headers.js';
import {
  boosterConfig,
  boosterSuiteDatabase,
  type FixtureServer,
  idleHeartbeat,
  SECRET,
  signedPost,
  silentLog,
  startFixtureServer,
  until,
} from '../fixtures.js';

/** The data plane of one in-process booster in front of real loopback servers. */
const suite = boosterSuiteDatabase();
const { cleanups } = suite;

async function startBooster(id: string, overrides: Record<string, string | number | boolean> = {}, gate?: LicenseGate): Promise<Booster & { base: string }> {
  const b = createBooster({ config: boosterConfig(id, overrides), db: suite.db.db, log: silentLog, licenseGate: gate });
  const base = await b.listen();
  cleanups.push(() => b.close());
  return Object.assign(b, { base });
}

async function servers(base: string, ids: string[], opts: { stepCapacity?: number } = {}): Promise<FixtureServer[]> {
  const out: FixtureServer[] = [];
  for (const id of ids) {
    const f = await startFixtureServer({ id, boosters: [base], knex: suite.db.knex, stepCapacity: opts.stepCapacity });
    cleanups.push(() => f.stop());
    out.push(f);
  }
  for (const f of out) await f.heartbeatNow();
  return out;
}

/** GET of a read-only control path, signed as a cluster member would (fresh nonce each time). */
const signedGet = (base: string, path: string) =>
  get(base, path, signClusterRequest(SECRET, 'test', 'GET', path, '', Date.now(), { audience: audienceOf(base) }));

async function get(base: string, path: string, headers: Record<string, string> = {}) {
  const r = await request(base + path, { headers });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text, json: () => JSON.parse(text) };
}

async function activeBooster(id: string, overrides: Record<string, string | number | boolean> = {}, gate?: LicenseGate) {
  const b = await startBooster(id, overrides, gate);
  await until(() => b.role() === 'active', 'booster active');
  return b;
}

async function upCount(b: Booster, n: number) {
  await until(() => b.table.routable.length >= n, `${n} servers routable`);
}

describe('booster data plane', () => {
  it('proxies with forwarding headers, epoch and request id; strips hop-by-hop headers; refuses /_internal/', async () => {
    const b = await activeBooster('dp-headers');
    const [s] = await servers(b.base, ['h1']);
    await upCount(b, 1);
    const r = await new Promise<{ status: number; upstream: unknown }>((resolve, reject) => {
      const req = httpRequest(
        `${b.base}/hello?x=1`,
        { headers: { connection: 'keep-alive, x-secret-hop', 'x-secret-hop': '1', 'x-request-id': 'rid-1' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, upstream: res.headers[HEADER.upstream] }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(r).toMatchObject({ status: 200, upstream: 'h1' });
    const seen = s.seen.find((x) => x.url === '/hello?x=1')!;
    expect(seen.headers[HEADER.epoch]).toBe(String(b.epoch()));
    expect(Number(seen.headers[HEADER.epoch])).toBeGreaterThan(0);
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-forwarded-proto']).toBe('http');
    expect(seen.headers['x-forwarded-host']).toBe(new URL(b.base).host);
    expect(seen.headers['x-request-id']).toBe('rid-1');
    expect(seen.headers['x-secret-hop']).toBeUndefined();
    const internal = await get(b.base, '/_internal/steps/dispatch');
    expect(internal.status).toBe(403);
    expect(internal.json().code).toBe('BOOSTER_ERR_INTERNAL_PATH');
    expect(s.seen.some((x) => x.url.startsWith('/_internal/'))).toBe(false);
  });

  it('balancing follows reported load', async () => {
    const b = await activeBooster('dp-balance');
    const [a, c] = await servers(b.base, ['busy', 'idle']);
    await upCount(b, 2);
    a.reportedInflight = 60;
    c.reportedInflight = 0;
    await Promise.all([a.heartbeatNow(), c.heartbeatNow()]);
    const count = async () => {
      const hits: Record<string, number> = { busy: 0, idle: 0 };
      for (let i = 0; i < 100; i++) hits[(await get(b.base, '/x')).headers[HEADER.upstream] as string]++;
      return hits;
    };
    const first = await count();
    expect(first.idle).toBeGreaterThan(90);
    a.reportedInflight = 0;
    c.reportedInflight = 60;
    await Promise.all([a.heartbeatNow(), c.heartbeatNow()]);
    const second = await count();
    expect(second.busy).toBeGreaterThan(90);
  });

  it('a killed server leaves rotation at once and idempotent or keyed requests see no error', async () => {
    const b = await activeBooster('dp-kill', { OMFLOW_BOOSTER_EJECT_MS: 5000 });
    const fx = await servers(b.base, ['k1', 'k2', 'k3']);
    await upCount(b, 3);
    const statuses: number[] = [];
    let stop = false;
    let n = 0;
    const load = (async () => {
      while (!stop) {
        const i = n++;
        const r =
          i % 2 === 0
            ? await request(`${b.base}/get`, {})
            : await request(`${b.base}/post`, {
                method: 'POST',
                body: JSON.stringify({ i }),
                headers: { 'content-type': 'application/json', 'idempotency-key': `k-${i}` },
              });
        await r.body.dump();
        statuses.push(r.statusCode);
      }
    })();
    await until(() => statuses.length > 30, 'some traffic');
    const killedAt = Date.now();
    await fx[1].kill();
    await until(() => b.table.servers.get('k2')!.lastState !== 'up', 'k2 out of rotation', 1000, 5);
    const outAfter = Date.now() - killedAt;
    const before = statuses.length;
    await until(() => statuses.length > before + 60, 'traffic after the kill');
    stop = true;
    await load;
    expect(outAfter).toBeLessThan(1000);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const st = (await signedGet(b.base, BOOSTER_PATH.status)).json();
    expect(st.servers.find((s: { id: string }) => s.id === 'k2').state).not.toBe('up');
  });

  it('retries a keyed POST whose connection was reset, but never a non-keyed one', async () => {
    const b = await activeBooster('dp-reset');
    const [a, c] = await servers(b.base, ['r1', 'r2']);
    await upCount(b, 2);
    // r2 reports heavy load so the first attempt goes to r1, which resets after reading the body.
    c.reportedInflight = 1000;
    await c.heartbeatNow();
    a.resets = 1;
    const plain = await request(`${b.base}/reset-once`, { method: 'POST', body: '{"n":1}', headers: { 'content-type': 'application/json' } });
    const plainBody = (await plain.body.json()) as { code: string };
    expect(plain.statusCode).toBe(502);
    expect(plainBody.code).toBe('BOOSTER_ERR_UPSTREAM');
    const reached = [...a.seen, ...c.seen].filter((s) => s.url === '/reset-once' && s.method === 'POST');
    expect(reached).toHaveLength(1);

    a.resets = 1;
    const keyed = await request(`${b.base}/reset-once`, {
      method: 'POST',
      body: '{"n":2}',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'abc' },
    });
    const keyedBody = (await keyed.body.json()) as { server: string; bytes: number };
    expect(keyed.statusCode).toBe(200);
    expect(keyedBody).toMatchObject({ server: 'r2', bytes: 7 });
  });

  it('slow start ramps a new server up', async () => {
    const b = await activeBooster('dp-slow', { OMFLOW_BOOSTER_SLOW_START_MS: 1200 });
    await servers(b.base, ['old']);
    await upCount(b, 1);
    await until(() => b.table.rampOf(b.table.servers.get('old')!) >= 1, 'old fully ramped', 4000, 50);
    const [fresh] = await servers(b.base, ['new']);
    await upCount(b, 2);
    const window = async (ms: number) => {
      const end = Date.now() + ms;
      let total = 0;
      let hits = 0;
      while (Date.now() < end) {
        total++;
        if ((await get(b.base, '/s')).headers[HEADER.upstream] === 'new') hits++;
      }
      return hits / total;
    };
    const early = await window(250);
    await until(() => b.table.rampOf(b.table.servers.get('new')!) >= 1, 'ramp complete', 4000, 50);
    const late = await window(250);
    expect(fresh.id).toBe('new');
    expect(early).toBeLessThan(0.3);
    expect(late).toBeGreaterThan(0.35);
    expect(late).toBeGreaterThan(early);
  });

  it('drain lets in-flight requests finish, sends new ones elsewhere, and is stored in the database', async () => {
    const b = await activeBooster('dp-drain');
    const [a, c] = await servers(b.base, ['d1', 'd2']);
    await upCount(b, 2);
    c.reportedInflight = 1000;
    await c.heartbeatNow();
    const held = request(`${b.base}/hold`);
    await until(() => a.seen.some((s) => s.url === '/hold'), 'held request reached d1');
    const r = await signedPost(b.base, BOOSTER_PATH.drain('d1'), { reason: 'patch' });
    expect(r.status).toBe(200);
    const row = await suite.db.knex('servers').where('id', 'd1').first();
    expect(suite.db.db.vendor && Boolean(Number(row.draining) || row.draining === true)).toBe(true);
    for (let i = 0; i < 10; i++) expect((await get(b.base, '/n')).headers[HEADER.upstream]).toBe('d2');
    a.release();
    const done = await held;
    expect(done.statusCode).toBe(200);
    expect(await done.body.json()).toMatchObject({ server: 'd1', held: true });
    const st = (await signedGet(b.base, BOOSTER_PATH.status)).json();
    expect(st.servers.find((s: { id: string }) => s.id === 'd1')).toMatchObject({ state: 'draining', draining: true });
    expect((await signedPost(b.base, BOOSTER_PATH.undrain('d1'), {})).status).toBe(200);
    await until(() => b.table.servers.get('d1')!.lastState === 'up', 'd1 back');
    expect((await signedPost(b.base, BOOSTER_PATH.drain('nope'), {})).status).toBe(404);
  });

  it('streams a large upload (the server sees bytes before the client finished) and SSE and WebSocket pass through', async () => {
    const b = await activeBooster('dp-stream');
    const [s] = await servers(b.base, ['st1']);
    await upCount(b, 1);
    const chunk = Buffer.alloc(1 << 20, 7);
    const total = 24;
    async function* body() {
      for (let i = 0; i < total - 1; i++) yield chunk;
      // The last MiB is sent only once the server has received data: proof nothing buffers the whole body.
      await until(() => s.uploadBytes > 0, 'upstream received bytes', 10_000, 5);
      yield chunk;
    }
    const r = await request(`${b.base}/upload`, { method: 'POST', body: Readable.from(body()), headers: { 'content-type': 'application/octet-stream' } });
    expect(r.statusCode).toBe(200);
    expect(await r.body.json()).toMatchObject({ bytes: total * chunk.length });

    // SSE: the first event arrives while the server still holds the stream open.
    const first = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(`${b.base}/sse`, (res) => {
        res.setEncoding('utf8');
        res.once('data', (d: string) => {
          resolve(d);
          s.release();
          res.resume();
        });
      });
      req.on('error', reject);
      req.end();
    });
    expect(first).toContain('data: first');

    const u = new URL(b.base);
    const echoed = await new Promise<string>((resolve, reject) => {
      const sock = connect(Number(u.port), u.hostname, () => {
        sock.write(`GET /ws HTTP/1.1\r\nhost: ${u.host}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n`);
      });
      let buf = '';
      sock.on('data', (d) => {
        buf += d.toString();
        if (buf.includes('\r\n\r\n') && !buf.includes('ping')) sock.write('ping');
        if (buf.includes('ping')) {
          sock.destroy();
          resolve(buf);
        }
      });
      sock.on('error', reject);
    });
    expect(echoed).toMatch(/^HTTP\/1.1 101/);
    expect(echoed).toContain('x-server: st1');
  });

  it('queues requests beyond the per-server in-flight limit and answers 503 with Retry-After on queue timeout', async () => {
    const b = await activeBooster('dp-queue', {
      OMFLOW_BOOSTER_MAX_INFLIGHT_PER_SERVER: 1,
      OMFLOW_BOOSTER_QUEUE_TIMEOUT_MS: 150,
      OMFLOW_BOOSTER_QUEUE_SIZE: 1,
    });
    const [s] = await servers(b.base, ['q1']);
    await upCount(b, 1);
    const held = request(`${b.base}/hold`);
    await until(() => s.seen.some((x) => x.url === '/hold'), 'held request reached q1');
    const queued = get(b.base, '/queued');
    await new Promise((r) => setTimeout(r, 20));
    const overflow = await get(b.base, '/overflow');
    expect(overflow.status).toBe(503);
    expect(overflow.json().code).toBe('BOOSTER_ERR_OVERLOADED');
    const timedOut = await queued;
    expect(timedOut.status).toBe(503);
    expect(timedOut.headers['retry-after']).toBe('1');
    expect(timedOut.json().code).toBe('BOOSTER_ERR_QUEUE_TIMEOUT');
    const waiting = get(b.base, '/waits');
    await new Promise((r) => setTimeout(r, 30));
    s.release();
    expect((await held).statusCode).toBe(200);
    expect((await waiting).status).toBe(200);
  });

  it('the standby answers 503 with Retry-After and X-Booster-Active', async () => {
    const a = await activeBooster('dp-active');
    const s = await startBooster('dp-standby');
    await until(async () => (await get(s.base, '/x')).headers[HEADER.active] === a.base, 'standby knows the active');
    const r = await get(s.base, '/x');
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect(r.headers[HEADER.active]).toBe(a.base);
    expect(r.json().code).toBe('BOOSTER_ERR_STANDBY');
    expect((await get(s.base, BOOSTER_PATH.active)).status).toBe(503);
    expect((await get(a.base, BOOSTER_PATH.active)).status).toBe(200);

    // A standby configured to serve proxies too, under the active's epoch (servers would refuse an older one).
    const serving = await startBooster('dp-standby-serves', { OMFLOW_BOOSTER_STANDBY_SERVES: true });
    const [f] = await servers(serving.base, ['sv1']);
    await until(() => serving.table.routable.length === 1 && serving.epoch() === a.epoch(), 'serving standby ready');
    const ok = await get(serving.base, '/through-standby');
    expect(ok.status).toBe(200);
    expect(serving.role()).toBe('standby');
    expect(f.seen.find((x) => x.url === '/through-standby')!.headers[HEADER.epoch]).toBe(String(a.epoch()));
  });

  it('refuses forged, malformed and oversized control calls and registers nothing', async () => {
    const b = await activeBooster('dp-auth');
    const hb = idleHeartbeat({ nodeId: 'evil', url: 'http://127.0.0.1:1', startedAt: 'x', stepCapacity: 1 });
    const forged = await signedPost(b.base, BOOSTER_PATH.heartbeat, hb, 'wrong-secret-wrong-secret');
    expect(forged.status).toBe(401);
    expect(((await forged.json()) as { code: string }).code).toBe('COMMON_ERR_CLUSTER_AUTH');
    const unsigned = await fetch(b.base + BOOSTER_PATH.heartbeat, { method: 'POST', body: JSON.stringify(hb) });
    expect(unsigned.status).toBe(401);
    const malformed = await signedPost(b.base, BOOSTER_PATH.heartbeat, { ...hb, url: 'ftp://x' });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { code: string }).code).toBe('COMMON_ERR_BAD_REQUEST');
    const huge = await signedPost(b.base, BOOSTER_PATH.heartbeat, { ...hb, pad: 'x'.repeat(200_000) });
    expect(huge.status).toBe(413);
    expect(await suite.db.knex('servers').where('id', 'evil').first()).toBeUndefined();
    expect(b.table.servers.has('evil')).toBe(false);
    const st = (await signedGet(b.base, BOOSTER_PATH.status)).json();
    expect(st.servers).toEqual([]);
  });

  it('honours the license gate: 503 page, exempt paths, server cap, status', async () => {
    let allow = false;
    let refreshed = 0;
    const gate: LicenseGate = {
      async start() {},
      async refresh() {
        refreshed++;
        allow = true;
      },
      async close() {},
      status: (used) => ({ state: allow ? 'licensed' : 'expired', daysLeft: null, clusterId: null, servers: { licensed: 1, used }, warnings: [] }),
      allowsDistribution: () => allow,
      maxServers: () => 1,
    };
    const b = await activeBooster('dp-license', {}, gate);
    await servers(b.base, ['l1', 'l2']);
    await until(() => b.table.list.length === 2 && b.table.list.every((e) => e.lastState === 'up'), 'both up');
    const gated = await get(b.base, '/tickets', { accept: 'application/json' });
    expect(gated.status).toBe(503);
    expect(gated.json().code).toBe('BOOSTER_ERR_LICENSE_REQUIRED');
    expect((await get(b.base, '/admin/settings')).status).toBe(200);
    expect((await signedPost(b.base, BOOSTER_PATH.licenseChanged, {})).status).toBe(200);
    expect(refreshed).toBe(1);
    const hits = new Set<string>();
    for (let i = 0; i < 20; i++) hits.add((await get(b.base, '/t')).headers[HEADER.upstream] as string);
    expect([...hits]).toEqual(['l1']);
    const st = (await signedGet(b.base, BOOSTER_PATH.status)).json();
    expect(st.license).toMatchObject({ state: 'licensed', servers: { licensed: 1, used: 2 } });
    expect(st.servers.find((s: { id: string }) => s.id === 'l2')).toMatchObject({ routed: false });
  });

  it('exposes Prometheus metrics and records transitions as events', async () => {
    const b = await activeBooster('dp-metrics');
    await servers(b.base, ['m1']);
    await upCount(b, 1);
    await get(b.base, '/m');
    const m = await signedGet(b.base, BOOSTER_PATH.metrics);
    expect(m.text).toContain('omflow_booster_requests_total{server="m1",class="2xx"} 1');
    expect(m.text).toContain('omflow_booster_epoch ');
    expect(m.text).toContain('omflow_booster_takeovers_total 1');
    const ev = (await signedGet(b.base, BOOSTER_PATH.events)).json();
    const kinds = ev.events.map((e: { kind: string }) => e.kind);
    expect(kinds).toContain('takeover');
    expect(kinds).toContain('server-up');
  });
});
