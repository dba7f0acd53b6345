import { type ChildProcess, spawn } from 'node:child_process';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADER } from '../../../common/protocol/headers.js';
import { seed } from '../../../server/seed.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../../helpers/db.js';
import { freePort } from '../../helpers/processes.js';
import { OMFLOW, SECRET, type ServerProcess, startServerProcess } from '../../server/helpers.js';

const OPERATOR_TOKEN = 'db-pressure-operator-token-0123456789';

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Admission under database pressure with real processes: a real booster in front of a real app
 * server whose two pooled connections are held by transactions blocked on a row the test locks.
 * The server reports the pool wait in its heartbeat; the booster then sheds new work with
 * 503 BOOSTER_ERR_DB_PRESSURE + Retry-After, while keyed retries and health checks pass, and
 * admits new work again once the pressure is gone.
 */
describe.runIf(vendorsUnderTest().includes('postgres'))('admission under database pressure (real booster and server, postgres)', () => {
  let t: TestDatabase;
  let booster: ChildProcess;
  let boosterOut = '';
  let boosterUrl = '';
  let srv: ServerProcess;
  let lock: Knex.Transaction | null = null;

  beforeAll(async () => {
    t = await createTestDatabase('postgres', { migrate: true });
    await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: true });
    const port = await freePort();
    boosterUrl = `http://127.0.0.1:${port}`;
    booster = spawn(process.execPath, [OMFLOW, 'booster'], {
      env: {
        PATH: process.env.PATH,
        OMFLOW_DB_URL: t.url,
        OMFLOW_CLUSTER_SECRET: SECRET,
        OMFLOW_NODE_ID: 'booster-pressure',
        OMFLOW_LOG_LEVEL: 'warn',
        OMFLOW_BOOSTER_HOST: '127.0.0.1',
        OMFLOW_BOOSTER_PORT: String(port),
        OMFLOW_BOOSTER_SLOW_START_MS: '0',
        OMFLOW_BOOSTER_OPERATOR_TOKEN: OPERATOR_TOKEN,
        OMFLOW_BOOSTER_DB_PRESSURE_MS: '300',
        OMFLOW_BOOSTER_DB_PRESSURE_RETRY_AFTER_S: '3',
        // The deep /readyz check would also notice the exhausted pool and take the only server
        // out (BOOSTER_ERR_NO_SERVER); this test looks at the pressure signal alone.
        OMFLOW_BOOSTER_READY_INTERVAL_MS: '600000',
        // Likewise the adaptive limit (ADR 0013, its own tests): the admitted requests that wait at
        // the blocked server would bring it to 4 and queue the health checks asserted below.
        OMFLOW_BOOSTER_ADAPTIVE_LIMIT: 'false',
        // One process: the test tells shed from proxied by the booster's counters, which data-plane
        // workers report only every 100 ms (one poll could then see two decisions at once).
        OMFLOW_BOOSTER_WORKERS: '1',
        OMFLOW_DATA_DIR: '/tmp',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    booster.stdout!.on('data', (d) => (boosterOut += d));
    booster.stderr!.on('data', (d) => (boosterOut += d));
    await until('booster active', async () => (await fetch(`${boosterUrl}/_booster/active`)).status === 200);
    srv = await startServerProcess({
      OMFLOW_DB_URL: t.url,
      OMFLOW_NODE_ID: 'srv-pressure',
      BOOSTER_IP: '127.0.0.1',
      BOOSTER_PORT: String(port),
      OMFLOW_SERVER_HEARTBEAT_MS: '200',
      OMFLOW_DB_POOL_MAX: '2',
      // Requests wait for a pooled connection instead of failing while the test holds the lock.
      OMFLOW_DB_CONNECT_TIMEOUT_MS: '60000',
    });
  }, 90_000);

  afterAll(async () => {
    await lock?.rollback().catch(() => {});
    await srv?.stop();
    if (booster && booster.exitCode === null) {
      booster.kill('SIGTERM');
      await new Promise((r) => booster.once('exit', r));
    }
    await t?.drop();
  });

  const status = async () =>
    (await (await fetch(`${boosterUrl}/_booster/status`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } })).json()) as {
      dbPressure: { pressured: boolean; admitShare: number; shed: number };
      servers: { id: string; state: string; inflight: number; db: { rttMs: number; poolWaitMs: number } | null }[];
    };

  it('sheds new work with 503 BOOSTER_ERR_DB_PRESSURE + Retry-After while the pool is exhausted; keyed requests and health checks pass', async () => {
    const token = await until('login through the booster', async () => {
      const r = await fetch(`${boosterUrl}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'admin', password: 'admin-pass-1' }),
      });
      return r.status === 200 && ((await r.json()) as { token: string }).token;
    });
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const createTicket = (title: string, key?: string) =>
      fetch(`${boosterUrl}/api/forms/it-request/tickets`, {
        method: 'POST',
        headers: key ? { ...auth, 'idempotency-key': key } : auth,
        body: JSON.stringify({ data: { title, category: 'software', amount: 5 } }),
      });

    // Calm: the server reports its database figures and nothing is shed.
    const first = await createTicket('calm');
    expect(first.status).toBe(201);
    const { id } = (await first.json()) as { id: number };
    await until('ticket waits at its human step', async () => (await t.knex('tickets').where({ id }).first('state'))?.state === 'open');
    const calm = await until('a heartbeat with database figures', async () => {
      const s = await status();
      return s.servers[0]?.db ? s : undefined;
    });
    expect(calm.dbPressure).toMatchObject({ pressured: false, admitShare: 1, shed: 0 });

    // Pressure: the test locks the ticket row; two comments block on it holding both pooled
    // connections; a third request waits for a connection, and its wait grows past 300 ms.
    lock = await t.knex.transaction();
    await lock('tickets').where({ id }).forUpdate().first('id');
    const comment = () =>
      fetch(`${srv.url}/api/tickets/${id}/comments`, { method: 'POST', headers: auth, body: JSON.stringify({ body: 'held' }) }).then((r) => r.status);
    const blocked = [comment(), comment(), comment()];
    await until('the booster sees database pressure', async () => (await status()).dbPressure.pressured);

    const before = Number((await t.knex('tickets').count({ n: '*' }).first())!.n);
    // The booster's own counters tell where each request went: shed (answered by the booster) or
    // proxied (in flight at the server, waiting for a pooled connection). No timing involved.
    const where = async () => {
      const s = await status();
      return { shed: s.dbPressure.shed, proxied: s.servers[0].inflight };
    };
    const decided = async (prev: { shed: number; proxied: number }) =>
      until('the booster decided', async () => {
        const now = await where();
        return now.shed + now.proxied > prev.shed + prev.proxied && now;
      });
    // New, non-keyed work: most of it answered 503 at once (the admitted share halves each second
    // and never reaches zero, so a trickle still goes through and waits at the server).
    const answers: { status: number; code?: string; retryAfter: string | null }[] = [];
    const admitted: Promise<Response>[] = [];
    let seen = await where();
    const sendNew = async (title: string): Promise<boolean> => {
      const r = createTicket(title);
      const now = await decided(seen);
      const shed = now.shed > seen.shed;
      if (shed) {
        const res = await r;
        const body = (await res.json()) as { code?: string };
        answers.push({ status: res.status, code: body.code, retryAfter: res.headers.get('retry-after') });
      } else admitted.push(r);
      seen = now;
      return shed;
    };
    // The share is recomputed when work arrives, at most once a second: until a second has passed
    // since the last calm request it is still 1. After the pause the first new request cuts it to
    // a half or less (so it is shed), and at least every second one of the next 8 is shed too.
    await new Promise((r) => setTimeout(r, 1100));
    let primed = false;
    for (let i = 0; i < 8 && !primed; i++) primed = await sendNew(`prime ${i}`);
    expect(primed).toBe(true);
    answers.length = 0;
    for (let i = 0; i < 8; i++) await sendNew(`new ${i}`);
    expect(answers.length).toBeGreaterThanOrEqual(4);
    for (const a of answers) expect(a).toEqual({ status: 503, code: 'BOOSTER_ERR_DB_PRESSURE', retryAfter: '3' });

    // Health checks pass: proxied to the server (which keeps its probes to cluster members and
    // answers a proxied one 404), not shed; /_booster/active (the VIP's check) is never shed.
    for (let i = 0; i < 4; i++) {
      const health = await fetch(`${boosterUrl}/healthz`);
      expect([health.status, health.headers.get(HEADER.upstream)]).toEqual([404, 'srv-pressure']);
    }
    expect((await fetch(`${boosterUrl}/_booster/active`)).status).toBe(200);
    // Keyed requests are proxied, never shed: they wait at the server like the admitted ones.
    seen = await where();
    const keyed = [createTicket('keyed under pressure 1', 'pressure-key-1'), createTicket('keyed under pressure 2', 'pressure-key-2')];
    const afterKeyed = await until('both keyed requests proxied', async () => {
      const now = await where();
      return now.proxied >= seen.proxied + 2 && now;
    });
    expect(afterKeyed.shed).toBe(seen.shed);

    // The lock goes: everything that was let in completes, and nothing that was shed was written.
    await lock.commit();
    lock = null;
    expect(await Promise.all(blocked)).toEqual([201, 201, 201]);
    for (const r of keyed) expect((await r).status).toBe(201);
    for (const r of admitted) expect((await r).status).toBe(201);
    const after = Number((await t.knex('tickets').count({ n: '*' }).first())!.n);
    expect(after - before).toBe(admitted.length + keyed.length);
    const s = await status();
    expect(s.dbPressure.shed).toBeGreaterThanOrEqual(answers.length);

    // Pressure gone: new work is admitted again (the share grows back within a few seconds).
    await until('new work admitted again', async () => (await createTicket('after')).status === 201);
  }, 90_000);
});
