import { createPrivateKey } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLicenseVerifier, ensureLicenseState, listLicenseAudit, MAX_LICENSE_FILE_BYTES, readLicenseState } from '../../common/license/index.js';
import { buildPatch, generatePatchKeyPair, loadTrustedKeys, RELEASE_ENTRY } from '../../common/patch/index.js';
import { buildServer } from '../../server/app.js';
import { createSettingsStore, SETTING } from '../../server/features/settings/store.js';
import { createUsersService } from '../../server/features/users/service.js';
import { createUsersStore } from '../../server/features/users/store.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { serverConfig } from '../server/helpers.js';
import { issue, tamper, testKeyPair } from './helpers.js';

/** A multipart/form-data body as a browser sends it (fields first, then the file). */
function multipart(fields: Record<string, string>, file?: { field: string; name: string; data: Buffer }) {
  const boundary = `----omflowtest${Math.random().toString(16).slice(2)}`;
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) parts.push(Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  if (file)
    parts.push(
      Buffer.from(
        `--${boundary}\r\ncontent-disposition: form-data; name="${file.field}"; filename="${file.name}"\r\ncontent-type: application/octet-stream\r\n\r\n`,
      ),
      file.data,
      Buffer.from('\r\n'),
    );
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`admin pages (inject) on ${vendor}: admin only, CSRF on every form, upload limits, settings, patches`, () => {
    let t: TestDatabase;
    let app: FastifyInstance;
    const pair = testKeyPair();
    const patchKeys = generatePatchKeyPair();
    let admin: { cookie: string; csrf: string };
    let user: { cookie: string };

    async function login(username: string, password: string) {
      const r = await app.inject({
        method: 'POST',
        url: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: `username=${username}&password=${password}&next=/admin/settings`,
      });
      expect(r.statusCode).toBe(303);
      const cookie = String(r.headers['set-cookie']).split(';')[0];
      const page = await app.inject({ url: '/admin/settings', headers: { cookie } });
      return { cookie, csrf: /name="csrf" value="([^"]+)"/.exec(page.body)?.[1] ?? '' };
    }
    const form = (url: string, body: string, cookie = admin.cookie) =>
      app.inject({ method: 'POST', url, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: body });
    const upload = (url: string, fields: Record<string, string>, file?: { field: string; name: string; data: Buffer }) => {
      const m = multipart(fields, file);
      return app.inject({ method: 'POST', url, headers: { cookie: admin.cookie, 'content-type': m.contentType }, payload: m.payload });
    };

    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      const users = createUsersService({ store: createUsersStore(t.knex), settings: createSettingsStore(t.knex) });
      await users.ensureAdmin('admin', 'admin-pass-1');
      await users.createUser({ username: 'alice', displayName: 'Alice', password: 'alice-pass-1', locale: 'en' });
      app = await buildServer({
        config: serverConfig(t.url),
        db: t.db,
        log: pino({ level: 'silent' }),
        admin: {
          licenseVerifier: createLicenseVerifier({ keys: pair.keys }),
          patch: { trusted: loadTrustedKeys([patchKeys.trustedEntry], { includeVendor: false }), maxUploadBytes: 256 * 1024 },
        },
      });
      admin = await login('admin', 'admin-pass-1');
      user = await login('alice', 'alice-pass-1');
    });
    afterAll(async () => {
      await app?.close();
      await t?.drop();
    });

    it('every admin page is admin only', async () => {
      for (const url of ['/admin/settings', '/admin/cluster', '/admin/cluster/data', '/admin/patches']) {
        const anon = await app.inject({ url });
        expect(anon.statusCode, url).toBe(303);
        expect(anon.headers.location).toContain('/login');
        expect((await app.inject({ url, headers: { cookie: user.cookie } })).statusCode, url).toBe(403);
        expect((await app.inject({ url, headers: { cookie: admin.cookie } })).statusCode, url).toBe(200);
      }
      // Before any booster started, the admin page does not start the trial.
      expect((await app.inject({ url: '/admin/settings', headers: { cookie: admin.cookie } })).body).toContain('Trial: not started yet');
      expect(await readLicenseState(t.db)).toBeNull();
    });

    it('every state-changing form needs the CSRF token', async () => {
      const posts: Array<() => Promise<{ statusCode: number; body: string }>> = [
        () => form('/admin/settings', 'logLevel=debug&lockoutFailures=3&lockoutMinutes=10&sessionTimeout=60'),
        () => upload('/admin/settings/license/upload', {}, { field: 'license', name: 'l.omflowlic', data: Buffer.from(issue(pair)) }),
        () => upload('/admin/settings/license/upload', { csrf: 'wrong' }, { field: 'license', name: 'l.omflowlic', data: Buffer.from(issue(pair)) }),
        () => form('/admin/settings/license/apply', `license=${encodeURIComponent(Buffer.from(issue(pair)).toString('base64'))}`),
        () => form('/admin/cluster/servers/s1/drain', ''),
        () => upload('/admin/patches', {}, { field: 'patch', name: 'p.tar.gz', data: Buffer.from('x') }),
        () => form('/admin/patches/rollouts/0/halt', ''),
      ];
      for (const post of posts) {
        const r = await post();
        expect(r.statusCode).toBe(403);
        expect(JSON.parse(r.body).code).toBe('SERVER_ERR_CSRF');
      }
      expect((await readLicenseState(t.db))?.licenseText ?? null).toBeNull();
    });

    it('system settings are validated and stored', async () => {
      const bad = await form('/admin/settings', `logLevel=debug&lockoutFailures=0&lockoutMinutes=10&sessionTimeout=60&csrf=${admin.csrf}`);
      expect(bad.statusCode).toBe(400);
      const ok = await form('/admin/settings', `logLevel=error&lockoutFailures=3&lockoutMinutes=10&sessionTimeout=60&csrf=${admin.csrf}`);
      expect(ok.statusCode).toBe(303);
      const settings = createSettingsStore(t.knex);
      expect(await settings.get(SETTING.logLevel)).toBe('error');
      expect(await settings.get(SETTING.lockoutFailures)).toBe('3');
      expect(await settings.get(SETTING.lockoutMinutes)).toBe('10');
      expect(await settings.get(SETTING.sessionTimeoutMinutes)).toBe('60');
    });

    it('license upload: size limit, preview, apply re-verifies what the browser sends back, audit', async () => {
      await ensureLicenseState(t.db);
      const big = await upload(
        '/admin/settings/license/upload',
        { csrf: admin.csrf },
        { field: 'license', name: 'big.omflowlic', data: Buffer.alloc(MAX_LICENSE_FILE_BYTES + 10, 0x41) },
      );
      expect(big.statusCode).toBe(413);
      expect(big.body).toContain('data-code="COMMON_ERR_LICENSE_TOO_LARGE"');
      const text = issue(pair, { customer: 'Preview Co.' });
      const preview = await upload('/admin/settings/license/upload', { csrf: admin.csrf }, { field: 'license', name: 'l.omflowlic', data: Buffer.from(text) });
      expect(preview.statusCode).toBe(200);
      expect(preview.body).toContain('Preview Co.');
      expect((await readLicenseState(t.db))!.licenseText).toBeNull();
      // An altered copy coming back from the preview form is refused.
      const forged = await form(
        '/admin/settings/license/apply',
        `license=${encodeURIComponent(Buffer.from(tamper(text)).toString('base64'))}&csrf=${admin.csrf}`,
      );
      expect(forged.statusCode).toBe(400);
      expect(forged.body).toContain('data-code="COMMON_ERR_LICENSE_BAD_SIGNATURE"');
      const b64 = /name="license" value="([^"]+)"/.exec(preview.body)![1];
      const applied = await form('/admin/settings/license/apply', `license=${encodeURIComponent(b64)}&csrf=${admin.csrf}`);
      expect(applied.statusCode).toBe(303);
      expect((await readLicenseState(t.db))!.licenseText).toBe(text);
      const page = await app.inject({ url: '/admin/settings?applied=1', headers: { cookie: admin.cookie } });
      expect(page.body).toMatch(/Licensed to Preview Co\. until/);
      const audit = (await listLicenseAudit(t.db)).map((a) => a.resultCode);
      expect(audit.slice(0, 4)).toEqual(['APPLIED', 'COMMON_ERR_LICENSE_BAD_SIGNATURE', 'PREVIEWED', 'COMMON_ERR_LICENSE_TOO_LARGE']);
    });

    it('API: an admin token reads the state and applies a license; codes for refusals; non-admins are refused', async () => {
      const token = async (u: string, p: string) =>
        (await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: u, password: p } })).json().token as string;
      const adminAuth = { authorization: `Bearer ${await token('admin', 'admin-pass-1')}` };
      const userAuth = { authorization: `Bearer ${await token('alice', 'alice-pass-1')}` };
      const text = issue(pair, { customer: 'API Co.' });
      expect(
        (await app.inject({ method: 'POST', url: '/api/admin/license', headers: { ...userAuth, 'content-type': 'application/json' }, payload: text }))
          .statusCode,
      ).toBe(403);
      const bad = await app.inject({
        method: 'POST',
        url: '/api/admin/license',
        headers: { ...adminAuth, 'content-type': 'application/json' },
        payload: tamper(text),
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().code).toBe('COMMON_ERR_LICENSE_BAD_SIGNATURE');
      const ok = await app.inject({ method: 'POST', url: '/api/admin/license', headers: { ...adminAuth, 'content-type': 'application/json' }, payload: text });
      expect(ok.statusCode).toBe(200);
      expect(ok.json().applied).toMatchObject({ customer: 'API Co.' });
      const state = await app.inject({ url: '/api/admin/license', headers: adminAuth });
      expect(state.json()).toMatchObject({ state: 'licensed', customer: 'API Co.' });
    });

    it('patches: a signed upload starts a rollout; halt, resume and roll back; untrusted and oversized uploads are refused', async () => {
      const entries = [
        { path: RELEASE_ENTRY, data: Buffer.from('// release\n'), mode: 0o755 },
        { path: 'README.md', data: Buffer.from('v1.0.1\n') },
      ];
      const { bytes } = buildPatch({ version: '1.0.1', sequence: 1, privateKey: createPrivateKey(patchKeys.privatePem), entries });
      const ok = await upload('/admin/patches', { csrf: admin.csrf }, { field: 'patch', name: 'p.tar.gz', data: bytes });
      expect(ok.statusCode).toBe(303);
      expect(ok.headers.location).toBe('/admin/patches?uploaded=1.0.1');
      const page = async () => (await app.inject({ url: '/admin/patches', headers: { cookie: admin.cookie } })).body;
      expect(await page()).toMatch(/id="rollout-state" data-state="active"/);
      for (const [action, state] of [
        ['halt', 'halted'],
        ['resume', 'active'],
        ['rollback', 'rolling_back'],
      ] as const) {
        const r = await form(`/admin/patches/rollouts/0/${action}`, `csrf=${admin.csrf}`);
        expect(r.statusCode, action).toBe(303);
        expect(await page()).toContain(`data-state="${state}"`);
      }
      const stranger = generatePatchKeyPair();
      const { bytes: untrusted } = buildPatch({ version: '1.0.2', sequence: 2, privateKey: createPrivateKey(stranger.privatePem), entries });
      const refused = await upload('/admin/patches', { csrf: admin.csrf }, { field: 'patch', name: 'p.tar.gz', data: untrusted });
      expect(refused.statusCode).toBeGreaterThanOrEqual(400);
      expect(refused.body).toMatch(/data-code="AGENT_ERR_PATCH_[A-Z_]+"/);
      const big = await upload('/admin/patches', { csrf: admin.csrf }, { field: 'patch', name: 'p.tar.gz', data: Buffer.alloc(300 * 1024) });
      expect(big.statusCode).toBe(413);
    });
  });
}
