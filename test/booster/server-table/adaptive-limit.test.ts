import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { createBooster } from '../../../booster/booster.js';
import { boosterConfig, boosterSuiteDatabase, silentLog, startFixtureServer, until } from '../fixtures.js';

/**
 * The adaptive concurrency limit with a real booster in front of a real loopback server that
 * behaves like a database-bound app server (/work: 4 requests worked on at once, 30 ms each, the
 * rest wait inside it). A burst far over what it can work on must wait in the booster, not pile
 * up in the server, and every request must be answered.
 */
const suite = boosterSuiteDatabase();
const { cleanups } = suite;

const BURST = 300;

async function burstThrough(adaptive: boolean): Promise<{ answers: { status: number; code?: string; retryAfter?: string }[]; peak: number; limit: number }> {
  const b = createBooster({
    config: boosterConfig(`al-${adaptive}`, { OMFLOW_BOOSTER_ADAPTIVE_LIMIT: adaptive, OMFLOW_BOOSTER_QUEUE_TIMEOUT_MS: 20_000 }),
    db: suite.db.db,
    log: silentLog,
  });
  const base = await b.listen();
  cleanups.push(() => b.close());
  await until(() => b.role() === 'active', 'booster active');
  const f = await startFixtureServer({ id: `work-${adaptive}`, boosters: [base], knex: suite.db.knex });
  cleanups.push(() => f.stop());
  f.workMs = 30; // the burst (300) takes 2.25 s of work: it is all offered long before the server could have done it
  await f.heartbeatNow();
  await until(() => b.table.routable.length === 1, 'server routable');
  const answers = await Promise.all(
    Array.from({ length: BURST }, async () => {
      const r = await request(`${base}/work`);
      const body = (await r.body.json()) as { code?: string };
      return { status: r.statusCode, code: body.code, retryAfter: r.headers['retry-after'] as string | undefined };
    }),
  );
  const e = b.table.servers.get(f.id)!;
  return { answers, peak: f.workPeak, limit: b.table.concurrencyLimitOf(e) };
}

/** Every request is answered: done, or told to come back (the queue held it for its bounded wait). */
function expectAllAnswered(answers: { status: number; code?: string; retryAfter?: string }[]): void {
  const refused = answers.filter((a) => a.status !== 200);
  expect(refused.every((a) => a.status === 503 && a.code === 'BOOSTER_ERR_QUEUE_TIMEOUT' && a.retryAfter === '1')).toBe(true);
  // The server works at 133/s: at least its first half second of work is done before any wait is cut.
  expect(answers.length - refused.length).toBeGreaterThanOrEqual(50);
}

describe('adaptive concurrency limit', () => {
  it('keeps a burst in the booster queue instead of the server; every request is answered', async () => {
    const on = await burstThrough(true);
    expectAllAnswered(on.answers);
    // The limit starts at 20 after its probe and only grows while time to headers stays under
    // 1.5 × the no-load time; the server works on 4 at once, so it settles far below the burst.
    // (Requests that waited past the standing queue's 500 ms are answered 503 with Retry-After.)
    expect(on.peak).toBeLessThanOrEqual(60);
    expect(on.limit).toBeLessThan(60);
  });

  it('off: the fixed maximum (256) lets the whole burst into the server', async () => {
    const off = await burstThrough(false);
    expectAllAnswered(off.answers);
    expect(off.peak).toBeGreaterThan(120);
  });
});
