import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../server/app.js';
import { createSettingsStore, SETTING } from '../../server/features/settings/store.js';
import { createUsersService } from '../../server/features/users/service.js';
import { createUsersStore } from '../../server/features/users/store.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { serverConfig } from './helpers.js';

for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`users, sessions and guards on ${vendor}`, () => {
    let t: TestDatabase;
    let app: FastifyInstance;
    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      const settings = createSettingsStore(t.knex);
      const users = createUsersService({ store: createUsersStore(t.knex), settings });
      await users.ensureAdmin('admin', 'admin-pass-1');
      await users.createUser({ username: 'alice', displayName: 'Alice', password: 'alice-pass-1', locale: 'ja' });
      await settings.set(SETTING.lockoutFailures, '3');
      app = await buildServer({ config: serverConfig(t.url), db: t.db });
    });
    afterAll(async () => {
      await app?.close();
      await t?.drop();
    });

    const login = (username: string, password: string) => app.inject({ method: 'POST', url: '/api/auth/login', payload: { username, password } });

    it('every /api route is described in /api/openapi.json', async () => {
      const doc = (await app.inject({ url: '/api/openapi.json' })).json();
      const documented = new Set(
        Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) =>
          Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
        ),
      );
      const routes = app.omflow.routes
        .filter((r) => r.url.startsWith('/api/') && !r.url.startsWith('/api/admin/') && r.url !== '/api/openapi.json')
        .map((r) => `${r.method} ${r.url}`);
      expect(routes.length).toBeGreaterThan(15);
      expect(routes.filter((r) => !documented.has(r))).toEqual([]);
    });

    it('API login returns a bearer token that authenticates; no token is 401 with a code', async () => {
      const r = await login('alice', 'alice-pass-1');
      expect(r.statusCode).toBe(200);
      const { token } = r.json();
      const me = await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } });
      expect(me.json().user).toMatchObject({ username: 'alice', role: 'user', locale: 'ja' });
      const anon = await app.inject({ url: '/api/auth/me' });
      expect(anon.statusCode).toBe(401);
      expect(anon.json().code).toBe('SERVER_ERR_UNAUTHENTICATED');
      // The database holds only the hash of the token.
      const rows = await t.knex('sessions').select('token_hash');
      expect(rows.map((x) => x.token_hash)).not.toContain(token);
      const forbidden = await app.inject({ method: 'POST', url: '/api/users', headers: { authorization: `Bearer ${token}` }, payload: {} });
      expect(forbidden.json().code).toBe('SERVER_ERR_FORBIDDEN');
    });

    it('bearer API tokens for external systems: created once, work as Authorization, never as a cookie', async () => {
      const session = (await login('alice', 'alice-pass-1')).json().token;
      const created = await app.inject({ method: 'POST', url: '/api/auth/tokens', headers: { authorization: `Bearer ${session}` }, payload: { name: 'erp' } });
      expect(created.statusCode).toBe(201);
      const { token } = created.json();
      expect(token).toMatch(/^omf_/);
      expect((await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } })).json().user.username).toBe('alice');
      expect((await app.inject({ url: '/api/auth/me', headers: { cookie: `omflow_session=${token}` } })).statusCode).toBe(401);
      expect((await t.knex('api_tokens').where({ name: 'erp' }).first()).token_hash).not.toBe(token);
      // Logging out of the session ends it on every server (the row is gone).
      await app.inject({ method: 'POST', url: '/api/auth/logout', headers: { authorization: `Bearer ${session}` } });
      expect((await app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${session}` } })).statusCode).toBe(401);
    });

    it('locks the account after N failures (settings), even for the right password, then an admin unlocks it', async () => {
      await app.inject({
        method: 'POST',
        url: '/api/users',
        headers: { authorization: `Bearer ${(await login('admin', 'admin-pass-1')).json().token}` },
        payload: { username: 'bob', displayName: 'Bob', password: 'bob-pass-12' },
      });
      for (let i = 0; i < 2; i++) expect((await login('bob', 'wrong-pass')).json().code).toBe('SERVER_ERR_LOGIN_FAILED');
      expect((await login('bob', 'wrong-pass')).json().code).toBe('SERVER_ERR_ACCOUNT_LOCKED');
      const locked = await login('bob', 'bob-pass-12');
      expect(locked.statusCode).toBe(423);
      expect(locked.json().code).toBe('SERVER_ERR_ACCOUNT_LOCKED');
      const admin = (await login('admin', 'admin-pass-1')).json().token;
      const bob = await t.knex('users').where({ username: 'bob' }).first();
      await app.inject({ method: 'PATCH', url: `/api/users/${bob.id}`, headers: { authorization: `Bearer ${admin}` }, payload: { unlock: true } });
      expect((await login('bob', 'bob-pass-12')).statusCode).toBe(200);
    });

    it('login never redirects off-site, and cookie sessions need the CSRF token on every state-changing API call', async () => {
      const form = { 'content-type': 'application/x-www-form-urlencoded' };
      for (const next of ['//evil.example', '/\\evil.example', 'https://evil.example', '/%0d%0aevil']) {
        const r = await app.inject({
          method: 'POST',
          url: '/login',
          payload: `username=admin&password=admin-pass-1&next=${encodeURIComponent(next)}`,
          headers: form,
        });
        expect(r.statusCode).toBe(303);
        expect([next, r.headers.location]).toEqual([next, next === '/%0d%0aevil' ? next : '/']);
      }
      const ok = await app.inject({ method: 'POST', url: '/login', payload: 'username=admin&password=admin-pass-1', headers: form });
      const cookie = String(ok.headers['set-cookie']).split(';')[0];
      expect(String(ok.headers['set-cookie'])).not.toContain('Secure');
      // Over TLS at the booster (it sets X-Forwarded-Proto), the session cookie is Secure.
      const viaTls = await app.inject({
        method: 'POST',
        url: '/login',
        payload: 'username=admin&password=admin-pass-1',
        headers: { ...form, 'x-forwarded-proto': 'https' },
      });
      expect(String(viaTls.headers['set-cookie'])).toMatch(/; Secure(;|$)/);
      for (const [method, url, payload] of [
        ['POST', '/api/groups', { name: 'csrf-test' }],
        ['POST', '/api/auth/tokens', { name: 'stolen' }],
        ['POST', '/api/flows', { flowKey: 'x', name: 'x', ticketPrefix: 'X', definition: {} }],
        ['POST', '/api/forms', { formKey: 'x', title: 'x', fields: [] }],
      ] as const) {
        const r = await app.inject({ method, url, headers: { cookie }, payload });
        expect([url, r.statusCode, r.json().code]).toEqual([url, 403, 'SERVER_ERR_CSRF']);
      }
      expect(await t.knex('user_groups').where({ name: 'csrf-test' }).first()).toBeUndefined();
    });

    it('health probes answer the cluster directly, not users through a booster', async () => {
      for (const url of ['/healthz', '/readyz']) {
        const proxied = await app.inject({ url, headers: { 'x-forwarded-for': '203.0.113.9' } });
        expect([url, proxied.statusCode, proxied.json().code]).toEqual([url, 404, 'SERVER_ERR_NOT_FOUND']);
        expect(proxied.body).not.toContain(app.omflow.runtime.nodeId);
      }
      expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
      // Only the probes: every other route still serves proxied users.
      expect((await app.inject({ url: '/login', headers: { 'x-forwarded-for': '203.0.113.9' } })).statusCode).toBe(200);
    });

    it('an unauthenticated X-Booster-Epoch can be refused by the fence but never raises it', async () => {
      const forged = await app.inject({ url: '/healthz', headers: { 'x-booster-epoch': '999999999999' } });
      expect(forged.statusCode).toBe(200);
      const proxied = await app.inject({ url: '/healthz', headers: { 'x-booster-epoch': '1' } });
      expect(proxied.statusCode).toBe(200);
      app.omflow.deps.fence.admit(5); // as a signed heartbeat reply would
      const stale = await app.inject({ url: '/healthz', headers: { 'x-booster-epoch': '4' } });
      expect([stale.statusCode, stale.json().code]).toEqual([409, 'SERVER_ERR_STALE_EPOCH']);
    });

    it('pages: login form sets a cookie session; admin pages redirect anonymous users and need CSRF for posts', async () => {
      const anon = await app.inject({ url: '/admin/users' });
      expect(anon.statusCode).toBe(303);
      expect(anon.headers.location).toBe('/login?next=%2Fadmin%2Fusers');
      const bad = await app.inject({
        method: 'POST',
        url: '/login',
        payload: 'username=admin&password=nope',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'accept-language': 'ja' },
      });
      expect(bad.statusCode).toBe(401);
      expect(bad.body).toContain('ユーザー名またはパスワードが違います');
      const ok = await app.inject({
        method: 'POST',
        url: '/login',
        payload: 'username=admin&password=admin-pass-1&next=/admin/users',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      expect(ok.statusCode).toBe(303);
      const cookie = String(ok.headers['set-cookie']).split(';')[0];
      const pageRes = await app.inject({ url: '/admin/users', headers: { cookie } });
      expect(pageRes.statusCode).toBe(200);
      expect(pageRes.body).toContain('href="/admin/settings"');
      const csrf = /name="csrf" value="([^"]+)"/.exec(pageRes.body)![1];
      const noCsrf = await app.inject({
        method: 'POST',
        url: '/admin/users',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'op=create-group&name=ops',
      });
      expect(noCsrf.json().code).toBe('SERVER_ERR_CSRF');
      const withCsrf = await app.inject({
        method: 'POST',
        url: '/admin/users',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        payload: `op=create-group&name=ops&csrf=${csrf}`,
      });
      expect(withCsrf.statusCode).toBe(200);
      expect(await t.knex('user_groups').where({ name: 'ops' }).first()).toBeTruthy();
      const alice = await t.knex('users').where({ username: 'alice' }).first();
      const disable = await app.inject({
        method: 'POST',
        url: '/admin/users',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        payload: `op=update-user&id=${alice.id}&role=user&locale=en&disabled=on&csrf=${csrf}`,
      });
      expect(disable.statusCode).toBe(200);
      expect((await login('alice', 'alice-pass-1')).json().code).toBe('SERVER_ERR_LOGIN_FAILED');
      await app.inject({
        method: 'POST',
        url: '/admin/users',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        payload: `op=update-user&id=${alice.id}&role=user&locale=ja&csrf=${csrf}`,
      });
      const user = (await login('alice', 'alice-pass-1')).json().token;
      const notAdmin = await app.inject({ url: '/admin/users', headers: { authorization: `Bearer ${user}` } });
      expect(notAdmin.statusCode).toBe(403);
    });
  });
}
