import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer } from '../../server/app.js';
import { createSettingsStore } from '../../server/features/settings/store.js';
import { createUsersService } from '../../server/features/users/service.js';
import { createUsersStore } from '../../server/features/users/store.js';
import { seed } from '../../server/seed.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { serverConfig } from './helpers.js';

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`web pages on ${vendor}`, () => {
    let t: TestDatabase;
    let app: FastifyInstance;
    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: true });
      await createUsersService({ store: createUsersStore(t.knex), settings: createSettingsStore(t.knex) }).createUser({
        username: 'hanako',
        displayName: '花子',
        password: 'hanako-pass',
        locale: 'ja',
      });
      app = await buildServer({ config: serverConfig(t.url, { OMFLOW_SERVER_DISPATCH_POLL_MS: '50' }), db: t.db });
      app.omflow.startBackground('http://127.0.0.1:1');
    });
    afterAll(async () => {
      await app?.close();
      await t?.drop();
    });

    async function signIn(username: string, password: string) {
      const r = await app.inject({ method: 'POST', url: '/login', headers: FORM, payload: new URLSearchParams({ username, password }).toString() });
      expect(r.statusCode).toBe(303);
      const cookie = String(r.headers['set-cookie']).split(';')[0];
      const home = await app.inject({ url: '/', headers: { cookie } });
      const csrf = /name="csrf" value="([^"]+)"/.exec(home.body)![1];
      return { cookie, csrf, home };
    }

    it('a Japanese user raises a ticket from the catalogue: field-level errors first, then the ticket page', async () => {
      const { cookie, csrf, home } = await signIn('hanako', 'hanako-pass');
      expect(home.body).toContain('<html lang="ja">');
      expect(home.body).toContain('href="/forms/it-request/new"');
      expect(home.body).not.toContain('href="/admin/settings"');
      const form = await app.inject({ url: '/forms/it-request/new', headers: { cookie } });
      expect(form.body).toContain('件名');
      const bad = await app.inject({
        method: 'POST',
        url: '/forms/it-request/new',
        headers: { ...FORM, cookie },
        payload: new URLSearchParams({ csrf, title: '', category: 'food', amount: 'abc' }).toString(),
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.body).toContain('必須項目です。');
      expect(bad.body).toContain('選択肢から選んでください。');
      expect(bad.body).toContain('値の型が正しくありません。');
      expect(bad.body).toMatch(/id="f_amount"[^>]*value="abc"/);
      const ok = await app.inject({
        method: 'POST',
        url: '/forms/it-request/new',
        headers: { ...FORM, cookie },
        payload: new URLSearchParams({ csrf, title: '<b>モニター</b>', category: 'hardware', amount: '25000' }).toString(),
      });
      expect(ok.statusCode).toBe(303);
      const detail = await app.inject({ url: ok.headers.location as string, headers: { cookie } });
      expect(detail.body).toMatch(/チケット REQ-\d{6} を起票しました。/);
      expect(detail.body).toContain('&lt;b&gt;モニター&lt;/b&gt;');
      expect(detail.body).not.toContain('<b>モニター</b>');
      const list = await app.inject({ url: '/tickets?q=REQ', headers: { cookie } });
      expect(list.body).toContain('モニター');
    });

    it('the approver sees the task, approves it on the ticket page; the history shows every step', async () => {
      const { cookie, csrf } = await signIn('admin', 'admin-pass-1');
      const created = await app.inject({
        method: 'POST',
        url: '/forms/it-request/new',
        headers: { ...FORM, cookie },
        payload: new URLSearchParams({ csrf, title: 'Laptop', category: 'hardware', amount: '200000' }).toString(),
      });
      const id = Number(/\/tickets\/(\d+)/.exec(created.headers.location as string)![1]);
      const deadline = Date.now() + 15_000;
      while ((await t.knex('tickets').where({ id }).first()).state !== 'open' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const tasks = await app.inject({ url: '/tasks', headers: { cookie } });
      expect(tasks.body).toContain(`href="/tickets/${id}"`);
      const page = await app.inject({ url: `/tickets/${id}`, headers: { cookie } });
      expect(page.body).toContain('value="approve"');
      expect(page.body).toContain('manager');
      const approved = await app.inject({
        method: 'POST',
        url: `/tickets/${id}/actions`,
        headers: { ...FORM, cookie },
        payload: new URLSearchParams({ csrf, action: 'approve', resolution: 'ordered', comment: 'ok' }).toString(),
      });
      expect(approved.statusCode).toBe(303);
      const after = await app.inject({ url: `/tickets/${id}`, headers: { cookie, 'accept-language': 'en' } });
      expect(after.body).toContain('Completed');
      for (const step of ['triage', 'large', 'approve', 'done']) expect(after.body).toContain(`<td>${step}</td>`);
    });

    it('admin forms page: a broken flow lists its problems; a valid one deploys a new version', async () => {
      const { cookie, csrf } = await signIn('admin', 'admin-pass-1');
      const editor = await app.inject({ url: '/admin/forms?flow=it-request', headers: { cookie } });
      expect(editor.body).toContain('&quot;ticketPrefix&quot;: &quot;REQ&quot;');
      const broken = await app.inject({
        method: 'POST',
        url: '/admin/forms',
        headers: { ...FORM, cookie },
        payload: new URLSearchParams({
          csrf,
          op: 'deploy-flow',
          json: '{"flowKey":"x","name":"X","ticketPrefix":"x1","definition":{"start":"a","steps":{}}}',
        }).toString(),
      });
      expect(broken.statusCode).toBe(400);
      expect(broken.body).toContain('ticketPrefix must match');
      expect(broken.body).toContain('start must name a step');
      const good = await app.inject({
        method: 'POST',
        url: '/admin/forms',
        headers: { ...FORM, cookie },
        payload: new URLSearchParams({
          csrf,
          op: 'deploy-flow',
          json: JSON.stringify({
            flowKey: 'leave',
            name: 'Leave',
            ticketPrefix: 'LV',
            definition: { start: 'ok', steps: { ok: { type: 'form', next: 'end' }, end: { type: 'end' } } },
          }),
        }).toString(),
      });
      expect(good.statusCode).toBe(200);
      expect(good.body).toContain('leave v1');
      const preview = await app.inject({
        method: 'POST',
        url: '/admin/forms',
        headers: { ...FORM, cookie },
        payload: new URLSearchParams({
          csrf,
          op: 'preview-form',
          json: JSON.stringify({
            formKey: 'leave',
            title: 'Leave',
            flowKey: 'leave',
            fields: [{ key: 'days', label: 'Days', type: 'number', required: true }],
          }),
        }).toString(),
      });
      expect(preview.body).toContain('id="f_days"');
    });
  });
}
