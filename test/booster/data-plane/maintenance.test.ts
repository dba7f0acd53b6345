import { request } from 'undici';
import { beforeEach, describe, expect, it } from 'vitest';
import { createBooster } from '../../../booster/booster.js';
import { BOOSTER_PATH, HEADER } from '../../../common/protocol/headers.js';
import { waitFor } from '../../helpers/poll.js';
import { runOmflow } from '../../helpers/processes.js';
import { boosterConfig, boosterSuiteDatabase, enqueueSteps, signedPost, silentLog, startFixtureServer } from '../fixtures.js';

/**
 * Maintenance mode on a real booster with two data-plane workers, a standby, real loopback
 * servers and the database: users get the maintenance page (in their language) and API clients
 * 503 + Retry-After, while admin pages, health checks, step dispatch and drains go on; the
 * switch is the cluster's, so the standby shows it and keeps it after a takeover.
 */
const WRITE = 'maint-write-token-0123456789abcdefghij';
const suite = boosterSuiteDatabase();
beforeEach(async () => {
  await suite.db.knex('booster_events').del();
  await suite.db.knex('booster_state').del();
});

async function startBooster(id: string, overrides: Record<string, string | number> = {}) {
  const b = createBooster({
    config: boosterConfig(id, { OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS: `ops:${WRITE}`, OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: 1000, ...overrides }),
    db: suite.db.db,
    log: silentLog,
  });
  const base = await b.listen();
  // close() is idempotent: a test may stop a booster itself.
  suite.cleanups.push(() => b.close());
  return Object.assign(b, { base });
}

async function get(url: string, headers: Record<string, string> = {}) {
  const r = await request(url, { headers: { connection: 'close', ...headers } });
  return { status: r.statusCode, headers: r.headers, body: await r.body.text() };
}

async function maintenanceOf(base: string): Promise<{ on: boolean; message: string | null; by: string | null }> {
  const r = await fetch(base + BOOSTER_PATH.status, { headers: { authorization: `Bearer ${WRITE}` } });
  return ((await r.json()) as { maintenance: { on: boolean; message: string | null; by: string | null } }).maintenance;
}

/** The command, sent again after Retry-After while the active rides through a lease renewal a loaded host made late (503 BOOSTER_ERR_LEASE_NOT_HELD). */
async function command(base: string, body: unknown): Promise<Response> {
  for (let i = 0; ; i++) {
    const r = await fetch(base + BOOSTER_PATH.maintenance, {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${WRITE}` },
    });
    if (r.status !== 503 || i === 20) return r;
    await r.arrayBuffer();
    await new Promise((res) => setTimeout(res, 1000));
  }
}

describe('maintenance mode', () => {
  it('serves the page and the API 503 from the booster while health checks, step dispatch and drains go on; off proxies again', async () => {
    const a = await startBooster('mt-a', { OMFLOW_BOOSTER_WORKERS: 2 });
    await waitFor(() => a.role() === 'active', { what: 'A active' });
    const b = await startBooster('mt-b', { OMFLOW_BOOSTER_WORKERS: 1 });
    const srv = await startFixtureServer({ id: 'srv-1', boosters: [a.base, b.base], knex: suite.db.knex, heartbeatMs: 100 });
    suite.cleanups.push(() => srv.stop());
    await waitFor(() => a.table.routable.length === 1, { what: 'srv-1 routable' });

    const on = await command(a.base, { on: true, message: 'Upgrade to 2.0 <b>until 22:00</b>', retryAfterS: 300 });
    expect(on.status).toBe(200);
    expect(await on.json()).toMatchObject({ on: true, message: 'Upgrade to 2.0 <b>until 22:00</b>', retryAfterS: 300, by: 'operator:ops' });
    const userRequests = () => srv.seen.filter((r) => !['/healthz', '/readyz'].includes(r.url)).length;
    const seenBefore = userRequests();

    // Answered once every worker serves the page: a browser in Japanese.
    for (let i = 0; i < 6; i++) {
      const page = await get(`${a.base}/tickets/new`, { accept: 'text/html,application/xhtml+xml', 'accept-language': 'ja,en-US;q=0.8' });
      expect(page.status).toBe(503);
      expect(page.headers['retry-after']).toBe('300');
      expect(page.headers['content-type']).toContain('text/html');
      expect(page.body).toContain('<html lang="ja">');
      expect(page.body).toContain('メンテナンス中');
      expect(page.body).toContain('Upgrade to 2.0 &#60;b&#62;until 22:00&#60;/b&#62;');
      expect(page.body).not.toContain('<b>until');
    }
    const english = await get(`${a.base}/`, { accept: 'text/html', 'accept-language': 'en-GB,ja;q=0.5' });
    expect(english.body).toContain('<html lang="en">');
    expect(english.body).toContain('Down for maintenance');
    const api = await get(`${a.base}/api/tickets`, { accept: 'application/json' });
    expect(api.status).toBe(503);
    expect(api.headers['retry-after']).toBe('300');
    expect(JSON.parse(api.body)).toEqual({ code: 'BOOSTER_ERR_MAINTENANCE', message: 'Upgrade to 2.0 <b>until 22:00</b>', retryAfterS: 300 });
    expect(userRequests()).toBe(seenBefore);

    // What keeps working: admin pages, login and health checks are proxied.
    for (const path of ['/admin/cluster', '/login', '/healthz', '/api/admin/settings']) {
      const r = await get(`${a.base}${path}`);
      expect(r.status, path).toBe(200);
      expect(r.headers[HEADER.upstream], path).toBe('srv-1');
    }
    // Queued steps are dispatched and run.
    const ids = await enqueueSteps(suite.db.knex, 3);
    await waitFor(async () => (await suite.db.knex('steps').whereIn('id', ids).andWhere('state', 'done')).length === 3, {
      what: 'steps done during maintenance',
      timeoutMs: 10_000,
    });
    // Health checks go on: a failing server goes down, and comes back.
    srv.healthy = false;
    await waitFor(() => a.table.routable.length === 0, { what: 'srv-1 taken out by its health check', timeoutMs: 10_000 });
    srv.healthy = true;
    await waitFor(() => a.table.routable.length === 1, { what: 'srv-1 back', timeoutMs: 10_000 });
    // A rollout's drain (signed, from an agent) is taken.
    expect((await signedPost(a.base, BOOSTER_PATH.drain('srv-1'), { reason: 'patching' })).status).toBe(200);
    expect((await signedPost(a.base, BOOSTER_PATH.undrain('srv-1'), {})).status).toBe(200);

    // The standby shows the cluster's switch.
    await waitFor(async () => (await maintenanceOf(b.base)).on, { what: 'the standby sees maintenance on', timeoutMs: 5000, intervalMs: 50 });

    const off = await command(a.base, { on: false });
    expect(off.status).toBe(200);
    for (let i = 0; i < 6; i++) {
      const r = await get(`${a.base}/tickets/new`, { accept: 'text/html' });
      expect(r.status).toBe(200);
      expect(r.headers[HEADER.upstream]).toBe('srv-1');
    }
    const events = await suite.db.knex('booster_events').whereIn('kind', ['maintenance-on', 'maintenance-off']).orderBy('id');
    expect(events.map((e) => [e.kind, (typeof e.details === 'string' ? JSON.parse(e.details) : e.details).by])).toEqual([
      ['maintenance-on', 'operator:ops'],
      ['maintenance-off', 'operator:ops'],
    ]);
  });

  it("is the cluster's: a takeover keeps it, and `omflow maintenance on|status|off` drive it with a write token", async () => {
    const a = await startBooster('mt-a');
    await waitFor(() => a.role() === 'active', { what: 'A active' });
    const b = await startBooster('mt-b', { OMFLOW_BOOSTER_FAST_POLL_MS: 20 });
    const srv = await startFixtureServer({ id: 'srv-1', boosters: [a.base, b.base], heartbeatMs: 100 });
    suite.cleanups.push(() => srv.stop());
    await waitFor(() => a.table.routable.length === 1 && b.table.routable.length === 1, { what: 'srv-1 routable on both' });
    const env = { OMFLOW_OPERATOR_TOKEN: WRITE, OMFLOW_OPERATOR_BOOSTER_URL: a.base };

    const set = await runOmflow(['maintenance', 'on', '--message', 'Back at 9', '--retry-after', '60'], env);
    expect(set.stderr).toBe('');
    expect(set.stdout).toContain('maintenance mode is ON');
    expect(set.stdout).toContain('Back at 9');
    // The active stops; the standby takes over and keeps the page up.
    await a.close();
    await waitFor(() => b.role() === 'active', { what: 'B took over', timeoutMs: 10_000 });
    const r = await get(`${b.base}/x`, { accept: 'application/json' });
    expect(r.status).toBe(503);
    expect(JSON.parse(r.body)).toMatchObject({ code: 'BOOSTER_ERR_MAINTENANCE', message: 'Back at 9', retryAfterS: 60 });

    const bEnv = { ...env, OMFLOW_OPERATOR_BOOSTER_URL: b.base };
    expect((await runOmflow(['maintenance', 'status'], bEnv)).stdout).toMatch(/ON since .* \(by operator:ops\); Retry-After 60 s; message: Back at 9/);
    const bad = await runOmflow(['maintenance', 'on', '--retry-after', 'soon'], bEnv);
    expect(bad.code).toBe(2);
    const offRun = await runOmflow(['maintenance', 'off'], bEnv);
    expect(offRun.code).toBe(0);
    expect(offRun.stdout).toContain('maintenance mode is off');
    expect((await get(`${b.base}/x`)).status).toBe(200);
  });
});
