import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../../booster/booster.js';
import { boosterConfig, boosterSuiteDatabase, type FixtureServer, silentLog, startFixtureServer, until } from '../fixtures.js';

/**
 * An app server's `503 SERVER_ERR_DB_UNAVAILABLE` (marked by X-Omflow-Db-Unavailable) blames
 * the shared database, not the server: the booster passes it through with its Retry-After,
 * does not count it as a passive failure (no ejection) and does not retry it elsewhere (every
 * server would say the same; a retry only adds load). A plain 503 still does both.
 */
const suite = boosterSuiteDatabase();
const { cleanups } = suite;

async function clusterOf(id: string, serverIds: string[]): Promise<{ b: Booster & { base: string }; fixtures: FixtureServer[] }> {
  // Eject after 2 failures, at most 100 % of the servers (the last one is always kept).
  const b = createBooster({
    config: boosterConfig(id, { OMFLOW_BOOSTER_EJECT_AFTER_5XX: 2, OMFLOW_BOOSTER_MAX_EJECTED_PERCENT: 100, OMFLOW_BOOSTER_EJECT_MS: 60_000 }),
    db: suite.db.db,
    log: silentLog,
  });
  const base = await b.listen();
  cleanups.push(() => b.close());
  await until(() => b.role() === 'active', 'booster active');
  const fixtures: FixtureServer[] = [];
  for (const sid of serverIds) {
    const f = await startFixtureServer({ id: sid, boosters: [base], knex: suite.db.knex });
    cleanups.push(() => f.stop());
    fixtures.push(f);
  }
  for (const f of fixtures) await f.heartbeatNow();
  await until(() => b.table.routable.length === serverIds.length, 'servers routable');
  return { b: Object.assign(b, { base }), fixtures };
}

const hits = (fixtures: FixtureServer[], path: string) => fixtures.reduce((n, f) => n + f.seen.filter((s) => s.url === path).length, 0);

describe('booster: a database 503 from an app server', () => {
  it('is passed through with Retry-After, never retried elsewhere, never ejects a server', async () => {
    const { b, fixtures } = await clusterOf('db503', ['d1', 'd2', 'd3']);
    for (let i = 0; i < 12; i++) {
      const r = await request(`${b.base}/db-down`);
      expect(r.statusCode).toBe(503);
      expect(r.headers['retry-after']).toBe('2');
      expect(((await r.body.json()) as { code: string }).code).toBe('SERVER_ERR_DB_UNAVAILABLE');
    }
    // One attempt per request (GET is idempotent, so a plain 503 would have been retried).
    expect(hits(fixtures, '/db-down')).toBe(12);
    expect(b.table.routable.length).toBe(3);
    expect(b.table.list.map((e) => b.table.stateOf(e))).toEqual(['up', 'up', 'up']);
  });

  it('a plain 503 (the contrast): retried on another server and counted towards ejection', async () => {
    const { b, fixtures } = await clusterOf('plain503', ['p1', 'p2', 'p3']);
    for (let i = 0; i < 12; i++) await (await request(`${b.base}/fail`)).body.dump();
    expect(hits(fixtures, '/fail')).toBeGreaterThan(12);
    expect(b.table.list.some((e) => b.table.stateOf(e) === 'ejected')).toBe(true);
  });
});
