import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../booster/booster.js';
import { buildServer } from '../../server/app.js';
import { seed } from '../../server/seed.js';
import { boosterConfig, freePort, silentLog, startFixtureServer } from '../booster/fixtures.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { serverConfig } from './helpers.js';

/**
 * The operator commands on the admin Cluster page: a pair of real boosters and a real server
 * behind them; the page's forms (CSRF-checked, admin only) set a weight, drain, retire (refused
 * for a live server with the booster's code), turn maintenance mode on and off and switch the
 * active over, and the event log names the admin.
 */
for (const vendor of vendorsUnderTest().slice(0, 1)) {
  describe(`admin cluster page commands on ${vendor}`, () => {
    let t: TestDatabase;
    let app: FastifyInstance;
    const boosters: Booster[] = [];
    const urls: string[] = [];
    let stopServer: () => Promise<void> = async () => {};
    let cookie = '';
    let csrf = '';

    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: false });
      const ports = [await freePort(), await freePort()];
      for (const p of ports) urls.push(`http://127.0.0.1:${p}`);
      for (const [i, id] of ['page-a', 'page-b'].entries()) {
        const b = createBooster({
          config: boosterConfig(id, { OMFLOW_BOOSTER_PORT: ports[i], OMFLOW_BOOSTER_ADVERTISE_URL: urls[i], OMFLOW_BOOSTER_PEER_URL: urls[1 - i] }),
          db: t.db,
          log: silentLog,
        });
        await b.listen();
        boosters.push(b);
        await waitFor(() => b.role() === (i === 0 ? 'active' : 'standby'), { what: `${id} settled`, timeoutMs: 10_000 });
      }
      const srv = await startFixtureServer({ id: 'srv-1', boosters: urls, heartbeatMs: 100 });
      stopServer = () => srv.stop();
      await waitFor(() => boosters.every((b) => b.table.routable.length === 1), { what: 'srv-1 routable' });
      app = await buildServer({
        config: serverConfig(t.url, {
          BOOSTER_IP: '127.0.0.1',
          BOOSTER_PORT: String(ports[0]),
          SECOND_BOOSTER_IP: '127.0.0.1',
          SECOND_BOOSTER_PORT: String(ports[1]),
        }),
        db: t.db,
        log: pino({ level: 'silent' }),
      });
      const login = await app.inject({
        method: 'POST',
        url: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'username=admin&password=admin-pass-1&next=/admin/cluster',
      });
      cookie = String(login.headers['set-cookie']).split(';')[0];
      csrf = /name="csrf" value="([^"]+)"/.exec((await app.inject({ url: '/admin/cluster', headers: { cookie } })).body)?.[1] ?? '';
    }, 60_000);
    afterAll(async () => {
      await app?.close();
      await stopServer();
      for (const b of boosters) await b.close();
      await t?.drop();
    });

    const post = (url: string, fields: Record<string, string> = {}, withCsrf = true) =>
      app.inject({
        method: 'POST',
        url,
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ ...fields, ...(withCsrf ? { csrf } : {}) }).toString(),
      });
    const events = async (kind: string) =>
      (await t.knex('booster_events').where('kind', kind).orderBy('id')).map((e) => ({
        booster: e.booster_id,
        subject: e.subject,
        ...(typeof e.details === 'string' ? JSON.parse(e.details) : e.details),
      }));

    it('weight, drain, undrain and retire from the page; a refusal shows the booster code; each logged once with the admin', async () => {
      expect((await post('/admin/cluster/servers/srv-1/weight', { weight: '300' }, false)).statusCode).toBe(403);
      const weight = await post('/admin/cluster/servers/srv-1/weight', { weight: '300' });
      expect(weight.statusCode).toBe(303);
      expect(weight.headers.location).toBe('/admin/cluster?done=weight&id=srv-1');
      await waitFor(() => boosters.every((b) => b.table.servers.get('srv-1')?.weight === 300), {
        what: 'both boosters route with weight 300',
        timeoutMs: 5000,
      });
      expect((await post('/admin/cluster/servers/srv-1/drain')).headers.location).toBe('/admin/cluster?done=drain&id=srv-1');
      expect((await post('/admin/cluster/servers/srv-1/undrain')).headers.location).toBe('/admin/cluster?done=undrain&id=srv-1');
      const live = await post('/admin/cluster/servers/srv-1/retire');
      expect(live.headers.location).toContain('error=BOOSTER_ERR_SERVER_LIVE');
      const shown = await app.inject({ url: String(live.headers.location), headers: { cookie } });
      expect(shown.body).toContain('data-code="BOOSTER_ERR_SERVER_LIVE"');
      const page = await app.inject({ url: '/admin/cluster', headers: { cookie } });
      expect(page.body).toMatch(/data-field="weight"[^>]*value="300"|value="300"[^>]*data-field="weight"/);

      // One booster takes each command (the active, unless a loaded host moved the role meanwhile).
      expect(await events('weight')).toEqual([
        { booster: expect.stringMatching(/^page-[ab]$/), subject: 'srv-1', by: 'admin:admin via test-node', weight: 300 },
      ]);
      expect((await events('drain')).map((e) => e.by)).toEqual(['admin:admin via test-node']);
      expect((await events('undrain')).map((e) => e.by)).toEqual(['admin:admin via test-node']);
      expect(await events('retire')).toEqual([]);
    });

    it('maintenance on and off from the page, then a switchover to the standby and back', async () => {
      const on = await post('/admin/cluster/maintenance', { on: 'true', message: 'Quarterly patching', retryAfterS: '600' });
      expect(on.headers.location).toBe('/admin/cluster?done=maintenanceOn&id=');
      const page = await app.inject({ url: '/admin/cluster', headers: { cookie } });
      expect(page.body).toContain('id="maintenance-state" data-on="true"');
      expect(page.body).toContain('Quarterly patching');
      // Through the active (a loaded host may have moved the role since the start).
      const activeUrl = () => urls[boosters.findIndex((b) => b.role() === 'active')];
      const r = await fetch(`${activeUrl()}/anything`, { headers: { accept: 'application/json' } });
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('600');
      expect((await post('/admin/cluster/maintenance', { on: 'false' })).headers.location).toBe('/admin/cluster?done=maintenanceOff&id=');
      await waitFor(async () => (await fetch(`${activeUrl()}/anything`)).status === 200, { what: 'served again' });
      expect((await events('maintenance-on')).map((e) => [e.by, e.message, e.retryAfterS])).toEqual([['admin:admin via test-node', 'Quarterly patching', 600]]);

      // The standby's row offers the switchover; the page sends it to the active.
      expect((await app.inject({ url: '/admin/cluster', headers: { cookie } })).body).toContain('data-action="switchover"');
      const [from, to] = boosters[0].role() === 'active' ? ['page-a', 'page-b'] : ['page-b', 'page-a'];
      const sw = await post('/admin/cluster/switchover', { to });
      expect(sw.headers.location).toBe(`/admin/cluster?done=switchover&id=${to}`);
      expect(boosters.find((b) => b.role() === 'active')?.nodeId).toBe(to);
      const back = await post('/admin/cluster/switchover', { to: from });
      expect(back.headers.location).toBe(`/admin/cluster?done=switchover&id=${from}`);
      expect(boosters.find((b) => b.role() === 'active')?.nodeId).toBe(from);
      expect((await events('switchover')).map((e) => [e.booster, e.subject, e.by])).toEqual([
        [from, to, 'admin:admin via test-node'],
        [to, from, 'admin:admin via test-node'],
      ]);
      const wrong = await post('/admin/cluster/switchover', { to: 'page-z' });
      expect(wrong.headers.location).toContain('error=BOOSTER_ERR_SWITCHOVER_NO_CANDIDATE');
    });
  });
}
