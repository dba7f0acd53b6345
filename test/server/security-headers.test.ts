import { randomBytes, scryptSync } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../server/app.js';
import { createPasswordHasher, SCRYPT_PARAMS } from '../../server/features/users/passwords.js';
import { seed } from '../../server/seed.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { serverConfig } from './helpers.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

/** What a browser enforces from the CSP header: the directive's sources. */
function directives(csp: string): Map<string, string[]> {
  return new Map(
    csp
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...sources]) => [name, sources]),
  );
}

describe('password hashes', () => {
  it('never runs more scrypt hashes at once than allowed, and hands the slots out in order', async () => {
    const cheap = { N: 2 ** 10, r: 8, p: 1, keylen: 32 };
    const hasher = createPasswordHasher({ concurrency: 2, params: cheap });
    let peak = 0;
    const watch = setInterval(() => (peak = Math.max(peak, hasher.load.running)), 0);
    const hashes = await Promise.all(Array.from({ length: 12 }, (_, i) => hasher.hash(`pw-${i}`)));
    clearInterval(watch);
    expect(peak).toBeLessThanOrEqual(2);
    expect(hasher.load).toEqual({ running: 0, waiting: 0 });
    expect(await hasher.verify('pw-3', hashes[3])).toBe(true);
    expect(await hasher.verify('pw-4', hashes[3])).toBe(false);
  });

  it("uses OWASP's scrypt minimum and refuses stored parameters that would allocate gigabytes", async () => {
    expect(SCRYPT_PARAMS).toMatchObject({ N: 131072, r: 8, p: 1 });
    const hasher = createPasswordHasher({ concurrency: 1 });
    const huge = `scrypt$${2 ** 24}$8$1$${randomBytes(16).toString('base64')}$${randomBytes(64).toString('base64')}`;
    expect(await hasher.verify('x', huge)).toBe(false);
    expect(hasher.needsRehash(huge)).toBe(true);
  });
});

for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`security headers and cookies of the pages on ${vendor}`, () => {
    let t: TestDatabase;
    let app: FastifyInstance;
    let admin: { cookie: string };

    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: true });
      app = await buildServer({ config: serverConfig(t.url), db: t.db });
      const r = await app.inject({ method: 'POST', url: '/login', headers: FORM, payload: 'username=admin&password=admin-pass-1' });
      admin = { cookie: String(r.headers['set-cookie']).split(';')[0] };
    });
    afterAll(async () => {
      await app?.close();
      await t?.drop();
    });

    const PAGES = ['/', '/tasks', '/tickets', '/forms/it-request/new', '/admin/users', '/admin/forms', '/admin/settings', '/admin/cluster', '/admin/patches'];

    it('every page, API answer and error carries the headers; the CSP allows no inline script or style, and no page has any', async () => {
      const answers = [
        await app.inject({ url: '/login' }),
        await app.inject({ url: '/api/auth/me' }),
        await app.inject({ url: '/no-such-page' }),
        ...(await Promise.all(PAGES.map((url) => app.inject({ url, headers: admin })))),
      ];
      for (const r of answers) {
        const csp = directives(String(r.headers['content-security-policy']));
        const where = r.raw.req.url;
        expect({ where, frameAncestors: csp.get('frame-ancestors') }).toEqual({ where, frameAncestors: ["'none'"] });
        expect({ where, script: csp.get('script-src'), style: csp.get('style-src'), attr: csp.get('script-src-attr') }).toEqual({
          where,
          script: ["'self'"],
          style: ["'self'"],
          attr: ["'none'"],
        });
        expect(r.headers).toMatchObject({ 'x-frame-options': 'DENY', 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' });
        // Plain HTTP: no HSTS (a browser would ignore it, and it must not pin an admin page that has no TLS yet).
        expect(r.headers['strict-transport-security']).toBeUndefined();
      }
      for (const r of answers.filter((a) => String(a.headers['content-type']).startsWith('text/html'))) {
        expect(r.statusCode).toBe(200);
        // What the CSP would block: inline <script>, <style>, style="" and on*="" attributes.
        expect({ url: r.raw.req.url, inline: r.body.match(/<script(?![^>]*\ssrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=/gi) }).toEqual({
          url: r.raw.req.url,
          inline: null,
        });
        for (const [, src] of r.body.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)) {
          const asset = await app.inject({ url: src.replace(/&amp;/g, '&') });
          expect({ src, status: asset.statusCode }).toEqual({ src, status: 200 });
          expect(asset.headers['content-type']).toMatch(/^text\/(css|javascript)/);
        }
      }
    });

    it('over TLS at the booster: HSTS, and the session cookie is Secure, HttpOnly and SameSite=Lax', async () => {
      const r = await app.inject({
        method: 'POST',
        url: '/login',
        headers: { ...FORM, 'x-forwarded-proto': 'https' },
        payload: 'username=admin&password=admin-pass-1',
      });
      expect(r.statusCode).toBe(303);
      expect(r.headers['strict-transport-security']).toBe('max-age=31536000');
      const cookie = String(r.headers['set-cookie']);
      expect(cookie).toMatch(/^omflow_session=[\w-]+;/);
      for (const attr of ['Path=/', 'HttpOnly', 'Secure', 'SameSite=Lax']) expect(cookie.split('; ')).toContain(attr);
      const page = await app.inject({ url: '/', headers: { 'x-forwarded-proto': 'https', cookie: cookie.split(';')[0] } });
      expect(page.headers['strict-transport-security']).toBe('max-age=31536000');
      expect(page.body).toContain('/admin/settings');
      // Sign-out clears it with the same attributes.
      const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)![1];
      const out = await app.inject({
        method: 'POST',
        url: '/logout',
        headers: { ...FORM, 'x-forwarded-proto': 'https', cookie: cookie.split(';')[0] },
        payload: `csrf=${csrf}`,
      });
      expect(out.statusCode).toBe(303);
      expect(String(out.headers['set-cookie'])).toMatch(/^omflow_session=; Max-Age=0; Path=\/; Expires=[^;]+; HttpOnly; Secure; SameSite=Lax$/);
    });

    it('a password hashed with older parameters still signs in, and is hashed again at the current ones', async () => {
      const salt = randomBytes(16);
      const old = `scrypt$16384$8$1$${salt.toString('base64')}$${scryptSync('old-pass-12', salt, 64, { N: 16384, r: 8, p: 1 }).toString('base64')}`;
      await t.knex('users').where({ username: 'admin' }).update({ password_hash: old });
      const login = () => app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'admin', password: 'old-pass-12' } });
      expect((await login()).statusCode).toBe(200);
      const stored = (await t.knex('users').where({ username: 'admin' }).first()).password_hash as string;
      expect(stored).toMatch(/^scrypt\$131072\$8\$1\$/);
      expect((await login()).statusCode).toBe(200);
      expect((await t.knex('users').where({ username: 'admin' }).first()).password_hash).toBe(stored);
      expect((await app.inject({ method: 'POST', url: '/api/auth/login', payload: { username: 'admin', password: 'admin-pass-1' } })).statusCode).toBe(401);
    });
  });
}
