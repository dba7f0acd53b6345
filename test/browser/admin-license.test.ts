import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getHelpers } from '../../common/db/helpers/index.js';
import { applyUpload, createLicenseVerifier, listLicenseAudit, readLicenseState } from '../../common/license/index.js';
import { enqueueStep } from '../../common/protocol/steps.js';
import { createSettingsStore } from '../../server/features/settings/store.js';
import { createUsersService } from '../../server/features/users/service.js';
import { createUsersStore } from '../../server/features/users/store.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { REPO_ROOT } from '../helpers/processes.js';
import { DAY, issue, tamper, testKeyPair } from '../license/helpers.js';
import { runCli, SECRET } from '../server/helpers.js';
import { boosterStatus, CHROMIUM, CHROMIUM_ARGS, haveChromium, type MiniCluster, startMiniCluster } from './cluster-harness.js';

const ARTIFACTS = join(REPO_ROOT, 'test-artifacts');
const FILES = join(ARTIFACTS, 'license-files');

if (!haveChromium) console.warn(`SKIPPED browser tests: no Chromium at ${CHROMIUM} (install Debian's chromium or set OMFLOW_TEST_CHROMIUM)`);

for (const vendor of vendorsUnderTest())
  describe.skipIf(!haveChromium && !process.env.CI)(`admin pages in Chromium through the booster on ${vendor}: license gate, upload, cluster, patches`, () => {
    let t: TestDatabase;
    let cluster: MiniCluster;
    let browser: Browser;
    let page: Page;
    const pair = testKeyPair();
    const verifier = createLicenseVerifier({ keys: pair.keys });
    let stepId: number;

    const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${vendor}-${name}.png`), fullPage: true });
    const file = (name: string, text: string) => {
      const p = join(FILES, `${vendor}-${name}`);
      writeFileSync(p, text);
      return p;
    };
    async function upload(path: string): Promise<void> {
      await page.goto(`${cluster.activeUrl()}/admin/settings`);
      // The real <input type=file>, then the real submit button.
      await page.setInputFiles('#license-file', path);
      await Promise.all([page.waitForLoadState('load'), page.waitForURL(/\/admin\/settings\/license\/upload$/), page.click('#license-upload-button')]);
    }

    beforeAll(async () => {
      mkdirSync(FILES, { recursive: true });
      t = await createTestDatabase(vendor, { migrate: true });
      const users = createUsersService({ store: createUsersStore(t.knex), settings: createSettingsStore(t.knex) });
      await users.ensureAdmin('admin', 'admin-pass-1');
      // A ticket waiting at an automatic step: it must survive the gate untouched.
      const h = getHelpers(t.knex);
      const formId = await h.insertReturningId(t.knex, 'forms', {
        form_key: 'f1',
        title: 'F1',
        fields: '[]',
        published: true,
        created_at: new Date(),
        updated_at: new Date(),
      });
      const ticketId = await h.insertReturningId(t.knex, 'tickets', {
        ticket_no: 'T-1',
        form_id: formId,
        title: 'queued',
        state: 'open',
        data: '{}',
        created_at: new Date(),
        updated_at: new Date(),
      });
      stepId = await enqueueStep(t.knex, { ticketId, stepKey: 'compute', stepType: 'compute', delayMs: 60 * 60_000 });
      cluster = await startMiniCluster(t, verifier);
      await waitFor(async () => (await boosterStatus(cluster.activeUrl())).servers.filter((s) => s.state === 'up').length === 2, {
        what: 'both servers up on the active booster',
        timeoutMs: 45_000,
      });
      const { chromium } = await import('playwright-core');
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
      const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
      // The copy button writes the cluster id to the clipboard.
      await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: cluster.activeUrl() });
      page = await context.newPage();
    });

    afterAll(async () => {
      await browser?.close();
      await cluster?.close();
      await t?.drop();
    });

    it('logs in through the booster and shows the trial in System settings; a tampered file is refused with its reason', async () => {
      const res = await page.goto(`${cluster.activeUrl()}/admin/settings`);
      expect(page.url(), await page.content()).toBe(`${cluster.activeUrl()}/login?next=%2Fadmin%2Fsettings`);
      // Served by an app server behind the booster (the booster names the upstream it chose).
      expect(res?.headers()['x-booster-upstream']).toMatch(/^server-[12]$/);
      await page.fill('#username', 'admin');
      await page.fill('#password', 'admin-pass-1');
      await Promise.all([page.waitForURL(/\/admin\/settings$/), page.click('button[type=submit].primary')]);
      await expect(page.textContent('#license-state')).resolves.toBe('Trial: 7 days left');
      const clusterId = (await readLicenseState(t.db))!.clusterId;
      await expect(page.textContent('#cluster-id')).resolves.toBe(clusterId);
      await page.click('#copy-cluster-id');
      // Polled from here: waitForFunction would evaluate a string in the page, which the CSP forbids.
      await expect.poll(() => page.textContent('#copy-cluster-id'), { timeout: 10_000, interval: 100 }).toBe('Copied');
      await expect(page.evaluate('navigator.clipboard.readText()')).resolves.toBe(clusterId);
      await shot('admin-settings-trial');

      await upload(file('tampered.omflowlic', tamper(issue(pair, { customer: 'Tampered Inc.' }))));
      await expect(page.getAttribute('#error', 'data-code')).resolves.toBe('COMMON_ERR_LICENSE_BAD_SIGNATURE');
      expect(await page.textContent('#error')).toContain('Bad signature');
      await expect(page.getAttribute('#license-state', 'data-state')).resolves.toBe('trial');
      await shot('admin-settings-tampered');
    });

    it('after 7 days the data plane is gated with a clear page while admin pages work through the booster; an upload lifts the gate on both boosters within 5 s', async () => {
      cluster.setClockOffset(7 * DAY + 60_000);
      await Promise.all(cluster.boosters.map((b) => b.gate.refresh()));
      for (const b of cluster.boosters) expect((await boosterStatus(b.url)).license.state).toBe('expired');

      const gatedApi = await fetch(`${cluster.activeUrl()}/api/tickets`, { headers: { accept: 'application/json' } });
      expect(gatedApi.status).toBe(503);
      expect(((await gatedApi.json()) as { code: string }).code).toBe('BOOSTER_ERR_LICENSE_REQUIRED');
      const gatedPage = await page.goto(`${cluster.activeUrl()}/`);
      expect(gatedPage?.status()).toBe(503);
      await expect(page.textContent('h1')).resolves.toBe('License required');
      await shot('gated-data-plane');

      await page.goto(`${cluster.activeUrl()}/admin/settings`);
      await expect(page.getAttribute('#license-state', 'data-state')).resolves.toBe('expired');
      await expect(page.textContent('#license-state')).resolves.toBe('Expired');
      await shot('admin-settings-expired');

      // Step dispatch paused: the queued step is still there, unassigned. Make it due now.
      await t
        .knex('steps')
        .where({ id: stepId })
        .update({ ready_at: new Date(Date.now() - 1000) });
      await new Promise((r) => setTimeout(r, 1500));
      const step = await t.knex('steps').where({ id: stepId }).first();
      expect(step).toMatchObject({ state: 'ready', dispatch_count: 0 });

      const clusterId = (await readLicenseState(t.db))!.clusterId;
      await upload(file('valid.omflowlic', issue(pair, { customer: 'ACME K.K.', clusterId, limits: { maxServers: 3 } })));
      await expect(page.textContent('#license-preview [data-field=customer]')).resolves.toBe('ACME K.K.');
      await expect(page.textContent('#license-preview [data-field=maxServers]')).resolves.toBe('3');
      await shot('admin-license-preview');
      const applied = Date.now();
      await Promise.all([page.waitForURL(/\/admin\/settings\?applied=1$/), page.click('#license-apply-button')]);
      for (const b of cluster.boosters)
        await waitFor(async () => (await boosterStatus(b.url)).licenseAllowsDistribution, {
          timeoutMs: 5000 - (Date.now() - applied),
          intervalMs: 50,
          what: `gate lifted on ${b.url}`,
        });
      console.log(`[${vendor}] license applied → gate lifted on both boosters in ${Date.now() - applied} ms`);
      await expect(page.getAttribute('#license-state', 'data-state')).resolves.toBe('licensed');
      expect(await page.textContent('#license-state')).toMatch(/^Licensed to ACME K\.K\. until \d{4}-/);
      await shot('admin-settings-licensed');
      const open = await fetch(`${cluster.activeUrl()}/api/tickets`, { headers: { accept: 'application/json' } });
      expect(open.status).not.toBe(503);
      await open.arrayBuffer();
      expect(await t.knex('steps').where({ id: stepId }).first()).toBeTruthy();
      const tickets = (await t.knex('tickets').count({ n: '*' }).first()) as { n: number | string };
      expect(Number(tickets.n)).toBe(1);
    });

    it('each refused upload names its reason; every upload is audited', async () => {
      const clusterId = (await readLicenseState(t.db))!.clusterId;
      const base = Date.now() + 7 * DAY;
      const cases: Array<[string, string, string]> = [
        ['malformed.omflowlic', 'this is not a license', 'COMMON_ERR_LICENSE_MALFORMED'],
        ['unknown-key.omflowlic', issue(pair, { keyId: 'retired-key' }), 'COMMON_ERR_LICENSE_UNKNOWN_KEY'],
        ['expired.omflowlic', issue(pair, { expiresAt: new Date(base - 30 * DAY).toISOString(), graceDays: 5 }, base), 'COMMON_ERR_LICENSE_EXPIRED'],
        ['not-yet.omflowlic', issue(pair, { notBefore: new Date(base + 3 * DAY).toISOString() }, base), 'COMMON_ERR_LICENSE_NOT_YET_VALID'],
        ['wrong-cluster.omflowlic', issue(pair, { clusterId: `${clusterId}-other` }), 'COMMON_ERR_LICENSE_WRONG_CLUSTER'],
      ];
      for (const [name, text, code] of cases) {
        await upload(file(name, text));
        await expect(page.getAttribute('#error', 'data-code')).resolves.toBe(code);
      }
      await shot('admin-settings-wrong-cluster');
      await expect(page.getAttribute('#license-state', 'data-state')).resolves.toBe('licensed');
      const audit = await listLicenseAudit(t.db, 20);
      expect(
        audit
          .slice(0, 5)
          .map((a) => a.resultCode)
          .reverse(),
      ).toEqual(cases.map((c) => c[2]));
      expect(audit.map((a) => a.resultCode)).toContain('APPLIED');
      expect(audit.every((a) => a.actor === 'admin')).toBe(true);
    });

    it('the cluster dashboard shows both boosters, the server, live charts and the event log; drain and undrain work', async () => {
      await page.goto(`${cluster.activeUrl()}/admin/cluster`);
      await expect(page.locator('#boosters-table tbody tr').count()).resolves.toBe(2);
      await expect(page.locator('#boosters-table [data-role=active]').count()).resolves.toBe(1);
      await page.waitForSelector('#servers-table tr[data-server="server-2"]');
      // Live charts: the page polls /admin/cluster/data and draws one SVG per server and metric.
      await expect
        .poll(() => page.evaluate('Number(document.body.getAttribute("data-polls") || 0) >= 3 && document.querySelectorAll("figure.chart").length >= 2'), {
          timeout: 15_000,
          interval: 250,
        })
        .toBe(true);
      await shot('admin-cluster');
      await Promise.all([page.waitForURL(/done=drain&id=server-2/), page.click('#servers-table tr[data-server="server-2"] button[data-action=drain]')]);
      await waitFor(async () => (await boosterStatus(cluster.activeUrl())).servers.find((s) => s.id === 'server-2')?.draining, { what: 'server-2 draining' });
      await page.goto(`${cluster.activeUrl()}/admin/cluster`);
      await expect(page.textContent('#servers-table tr[data-server="server-2"] [data-field=draining]')).resolves.toBe('✔');
      await Promise.all([page.waitForURL(/done=undrain&id=server-2/), page.click('#servers-table tr[data-server="server-2"] button[data-action=undrain]')]);
      await waitFor(async () => (await boosterStatus(cluster.activeUrl())).servers.find((s) => s.id === 'server-2')?.draining === false, {
        what: 'server-2 undrained',
      });
    });

    it('`omflow license status` prints the booster view; servers beyond the licensed count get no traffic and status says why', async () => {
      const cli = await runCli(['license', 'status', '--url', cluster.activeUrl(), '--json'], { OMFLOW_CLUSTER_SECRET: SECRET });
      expect(cli.code, cli.stderr).toBe(0);
      expect(JSON.parse(cli.stdout)).toMatchObject({ state: 'licensed', customer: 'ACME K.K.', servers: { licensed: 3, used: 2 } });
      const human = await runCli(['license', 'status', '--url', cluster.activeUrl()], { OMFLOW_CLUSTER_SECRET: SECRET });
      expect(human.stdout).toMatch(/^Licensed to ACME K\.K\. until /);

      const clusterId = (await readLicenseState(t.db))!.clusterId;
      const r = await applyUpload(t.db, verifier, issue(pair, { customer: 'Small Co.', clusterId, limits: { maxServers: 1 } }), { actor: 'test' });
      expect(r.ok).toBe(true);
      await Promise.all(cluster.boosters.map((b) => b.gate.refresh()));
      const st = await waitFor(
        async () => {
          const s = (await boosterStatus(cluster.activeUrl())) as unknown as {
            license: { servers: { licensed: number; used: number }; warnings: string[] };
            servers: Array<{ id: string; routed: boolean; reason: string | null }>;
          };
          return s.servers.filter((x) => x.routed === false).length === 1 ? s : null;
        },
        { what: 'one server not routed' },
      );
      expect(st.license.servers).toEqual({ licensed: 1, used: 2 });
      expect(st.license.warnings.join()).toContain('BOOSTER_ERR_LICENSE_SERVER_LIMIT');
      expect(st.servers.find((x) => !x.routed)!.reason).toContain('licensed');
      await page.goto(`${cluster.activeUrl()}/admin/cluster`);
      await page.waitForSelector('#servers-table small.error');
      await shot('admin-cluster-server-limit');
    });

    it('the patches page and Japanese labels', async () => {
      await page.goto(`${cluster.activeUrl()}/admin/patches`);
      await expect(page.textContent('h1')).resolves.toBe('Patches');
      await shot('admin-patches');
      await t.knex('users').where({ username: 'admin' }).update({ locale: 'ja' });
      await page.goto(`${cluster.activeUrl()}/admin/settings`);
      await expect(page.textContent('h1')).resolves.toBe('システム設定');
      expect(await page.textContent('#license-state')).toMatch(/^Small Co\. 様にライセンス済み/);
      await shot('admin-settings-ja');
    });
  });
