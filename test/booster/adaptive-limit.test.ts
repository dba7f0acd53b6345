import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createBooster } from '../../booster/booster.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { boosterConfig, silentLog, startFixtureServer, until } from './fixtures.js';

/**
 * The adaptive concurrency limit with a real booster in front of a real loopback server that
 * behaves like a database-bound app server (/work: 4 requests worked on at once, 30 ms each, the
 * rest wait inside it). A burst far over what it can work on must wait in the booster, not pile
 * up in the server, and still be answered.
 */
let tdb: TestDatabase;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  tdb = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  await tdb.knex('servers').del();
  await tdb.knex('booster_lease').update({ holder: null, expires_at: new Date(0) });
});
afterAll(async () => {
  await tdb?.drop();
});

const BURST = 300;

async function burstThrough(adaptive: boolean): Promise<{ statuses: number[]; peak: number; limit: number }> {
  const b = createBooster({
    config: boosterConfig(`al-${adaptive}`, { OMFLOW_BOOSTER_ADAPTIVE_LIMIT: adaptive, OMFLOW_BOOSTER_QUEUE_TIMEOUT_MS: 20_000 }),
    db: tdb.db,
    log: silentLog,
  });
  const base = await b.listen();
  cleanups.push(() => b.close());
  await until(() => b.role() === 'active', 'booster active');
  const f = await startFixtureServer({ id: `work-${adaptive}`, boosters: [base], knex: tdb.knex });
  cleanups.push(() => f.stop());
  f.workMs = 30; // the burst (300) takes 2.25 s of work: it is all offered long before the server could have done it
  await f.heartbeatNow();
  await until(() => b.table.routable.length === 1, 'server routable');
  const statuses = await Promise.all(
    Array.from({ length: BURST }, async () => {
      const r = await request(`${base}/work`);
      await r.body.dump();
      return r.statusCode;
    }),
  );
  const e = b.table.servers.get(f.id)!;
  return { statuses, peak: f.workPeak, limit: b.table.concurrencyLimitOf(e) };
}

describe('adaptive concurrency limit', () => {
  it('keeps a burst in the booster queue instead of the server, and answers all of it', async () => {
    const on = await burstThrough(true);
    expect(on.statuses.filter((s) => s === 200)).toHaveLength(BURST);
    // The limit starts at 20 after its probe and only grows while time to headers stays under
    // 1.5 × the no-load time; the server works on 4 at once, so it settles far below the burst.
    expect(on.peak).toBeLessThanOrEqual(60);
    expect(on.limit).toBeLessThan(60);
  });

  it('off: the fixed maximum (256) lets the whole burst into the server', async () => {
    const off = await burstThrough(false);
    expect(off.statuses.filter((s) => s === 200)).toHaveLength(BURST);
    expect(off.peak).toBeGreaterThan(120);
  });
});
