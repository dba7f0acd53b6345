import cluster from 'node:cluster';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../../booster/booster.js';
import { BOOSTER_PATH, HEADER } from '../../../common/protocol/headers.js';
import { boosterConfig, boosterSuiteDatabase, type FixtureServer, signedPost, silentLog, startFixtureServer, until } from '../fixtures.js';

/**
 * A booster with two data-plane workers (ADR 0010): real forked processes sharing the port,
 * a leader owning the lease and /_booster/, real loopback app servers.
 */
const suite = boosterSuiteDatabase();
const { cleanups } = suite;

const liveWorkers = () => Object.values(cluster.workers ?? {}).filter((w) => w && !w.isDead());

async function startBooster(id: string, overrides: Record<string, string | number | boolean> = {}): Promise<Booster & { base: string }> {
  const b = createBooster({ config: boosterConfig(id, { OMFLOW_BOOSTER_WORKERS: 2, ...overrides }), db: suite.db.db, log: silentLog });
  const base = await b.listen();
  cleanups.push(() => b.close());
  return Object.assign(b, { base });
}

async function servers(base: string, ids: string[]): Promise<FixtureServer[]> {
  const out: FixtureServer[] = [];
  for (const id of ids) {
    const f = await startFixtureServer({ id, boosters: [base], knex: suite.db.knex });
    cleanups.push(() => f.stop());
    out.push(f);
  }
  for (const f of out) await f.heartbeatNow();
  return out;
}

/** A GET on a fresh connection each time, so the kernel hands requests to either worker. */
async function getFresh(url: string): Promise<{ status: number; upstream: string | undefined; body: string }> {
  const r = await request(url, { headers: { connection: 'close' } });
  const body = await r.body.text();
  return { status: r.statusCode, upstream: r.headers[HEADER.upstream] as string | undefined, body };
}

describe('booster with data-plane workers', () => {
  it('proxies through two worker processes, forwards /_booster/ to the leader, and drains consistently across workers', async () => {
    const b = await startBooster('wk-drain');
    expect(b.workers).toBe(2);
    expect(liveWorkers()).toHaveLength(2);
    await until(() => b.role() === 'active', 'booster active');
    // Heartbeats arrive at a worker and are forwarded to the leader: the leader's table fills.
    const [a, c] = await servers(b.base, ['w1', 'w2']);
    await until(() => b.table.routable.length === 2, 'both servers routable');
    const seenBy = new Set<string>();
    await until(
      async () => {
        const r = await getFresh(`${b.base}/spread`);
        if (r.status === 200 && r.upstream) seenBy.add(r.upstream);
        return seenBy.size === 2;
      },
      'requests reach both servers',
      10_000,
    );
    // Each worker learns its own concurrency limit per server; the leader shows their sum (each is at least 4).
    await until(() => (b.table.servers.get('w1')?.reportedLimit ?? 0) >= 8, 'the workers reported their limits');
    const w1 = b.table.servers.get('w1')!;
    expect(b.table.concurrencyLimitOf(w1)).toBe(w1.reportedLimit);
    // The epoch goes upstream from the workers too.
    const lastSeen = [...a.seen, ...c.seen].find((x) => x.url === '/spread');
    expect(Number(lastSeen?.headers[HEADER.epoch])).toBe(b.epoch());

    const drained = await signedPost(b.base, BOOSTER_PATH.drain('w1'), { reason: 'patch' });
    expect(drained.status).toBe(200);
    const upstreams = new Set<string | undefined>();
    for (let i = 0; i < 60; i++) {
      const r = await getFresh(`${b.base}/after-drain-${i}`);
      expect(r.status).toBe(200);
      upstreams.add(r.upstream);
    }
    expect([...upstreams]).toEqual(['w2']);
    expect(a.seen.filter((x) => x.url.startsWith('/after-drain')).length).toBe(0);

    expect((await signedPost(b.base, BOOSTER_PATH.undrain('w1'), {})).status).toBe(200);
    await until(async () => (await getFresh(`${b.base}/back`)).upstream === 'w1', 'w1 routed again after undrain', 10_000);
  });

  it('restarts a worker that dies, and a graceful stop finishes in-flight requests in every worker', async () => {
    const b = await startBooster('wk-stop');
    await until(() => b.role() === 'active', 'booster active');
    const [s] = await servers(b.base, ['s1']);
    await until(() => b.table.routable.length === 1, 'server routable');

    const victim = liveWorkers()[0]!;
    const victimPid = victim.process.pid;
    victim.process.kill('SIGKILL');
    await until(() => liveWorkers().length === 2 && liveWorkers().every((w) => w!.process.pid !== victimPid), 'worker restarted', 15_000);
    for (let i = 0; i < 10; i++) expect((await getFresh(`${b.base}/alive-${i}`)).status).toBe(200);

    // Two held requests on fresh connections: the stop must wait for both.
    const held = [request(`${b.base}/hold`, { headers: { connection: 'close' } }), request(`${b.base}/hold`, { headers: { connection: 'close' } })];
    await until(() => s.seen.filter((x) => x.url === '/hold').length === 2, 'both held requests reached the server');
    const closing = b.close();
    let closed = false;
    void closing.then(() => (closed = true));
    await until(
      async () =>
        (await fetch(`${b.base}/new`).then(
          () => false,
          () => true,
        )) || closed,
      'listener closed to new connections',
    );
    expect(closed).toBe(false);
    s.release();
    const answers = await Promise.all(held);
    for (const r of answers) {
      expect(r.statusCode).toBe(200);
      expect(await r.body.json()).toMatchObject({ held: true });
    }
    await closing;
    expect(liveWorkers()).toHaveLength(0);
  });

  it('a standby answers 503 from its workers like a single process', async () => {
    const active = await startBooster('wk-active', { OMFLOW_BOOSTER_WORKERS: 1 });
    await until(() => active.role() === 'active', 'first booster active');
    const standby = await startBooster('wk-standby');
    const r = await request(`${standby.base}/x`);
    expect(r.statusCode).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect(((await r.body.json()) as { code: string }).code).toBe('BOOSTER_ERR_STANDBY');
    const act = await request(standby.base + BOOSTER_PATH.active);
    expect(act.statusCode).toBe(503);
    await act.body.text();
  });
});
