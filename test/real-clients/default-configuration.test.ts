import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { createSettingsStore } from '../../server/features/settings/store.js';
import { createUsersService } from '../../server/features/users/service.js';
import { createUsersStore } from '../../server/features/users/store.js';
import { CHROMIUM, CHROMIUM_ARGS, haveChromium } from '../browser/cluster-harness.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { ADMIN, type DefaultCluster, insecureAgent, OPERATOR_TOKEN, otherUsers, startDefaultCluster } from './default-cluster.js';
import { ABUSE_CASES, describeOutcome } from './h2-abuse.js';

/**
 * The default configuration under the clients real users and operators use (issue 20): curl
 * over HTTP/1.1 and HTTP/2, nghttp, h2load, undici and Chromium, on every public path and every
 * /_booster/ path; then HTTP/2 abuse, each case bounded, while other users keep asking. No
 * data-plane worker may exit (the booster's log and omflow_booster_worker_exits_total), and
 * other users must be served (>= 99 %) while each abuse case runs. The figures are printed.
 */
const run = promisify(execFile);

let t: TestDatabase;
let c: DefaultCluster;
let workersAtStart: number[];

beforeAll(async () => {
  t = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
  c = await startDefaultCluster(t);
  workersAtStart = c.workerPids();
}, 180_000);
afterAll(async () => {
  await c?.close();
  await t?.drop();
});

/** Paths with what an anonymous user and the signed-in admin get (every GET route of the app server, and the booster's). */
const PAGES: [path: string, anonymous: number, admin: number][] = [
  ['/', 303, 200],
  ['/login', 200, 200],
  ['/tasks', 303, 200],
  ['/tickets', 303, 200],
  ['/tickets/999999', 303, 404],
  ['/forms/it-request/new', 303, 200],
  ['/admin/users', 303, 200],
  ['/admin/forms', 303, 200],
  ['/admin/settings', 303, 200],
  ['/admin/cluster', 303, 200],
  ['/admin/cluster/data', 303, 200],
  ['/admin/patches', 303, 200],
  ['/api/auth/me', 401, 200],
  ['/api/forms', 401, 200],
  ['/api/forms/it-request', 401, 200],
  ['/api/flows', 401, 200],
  ['/api/flows/it-request', 401, 200],
  ['/api/tasks', 401, 200],
  ['/api/tickets', 401, 200],
  ['/api/tickets/999999', 401, 404],
  ['/api/groups', 401, 200],
  ['/api/users', 401, 200],
  ['/api/admin/license', 401, 200],
  ['/api/openapi.json', 200, 200],
  // The servers' own probes answer the cluster, not users through a booster.
  ['/healthz', 404, 404],
  ['/readyz', 404, 404],
  ['/no-such-page', 404, 404],
  ['/_internal/steps/dispatch', 403, 403],
  [BOOSTER_PATH.active, 200, 200],
  [BOOSTER_PATH.status, 401, 401],
  [BOOSTER_PATH.metrics, 401, 401],
  [`${BOOSTER_PATH.events}?limit=5`, 401, 401],
  ['/_booster/no-such-path', 404, 404],
];
const BOOSTER_POSTS = [
  BOOSTER_PATH.heartbeat,
  BOOSTER_PATH.agentReport,
  BOOSTER_PATH.drain('server-1'),
  BOOSTER_PATH.patchNotice,
  BOOSTER_PATH.stepsReady,
  BOOSTER_PATH.licenseChanged,
];

/** One curl run over many URLs (one connection, reused): the status and HTTP version of each. */
async function curl(version: '--http1.1' | '--http2', urls: string[], args: string[] = []): Promise<{ status: number; http: string }[]> {
  const { stdout } = await run('curl', ['-sk', version, ...args, ...urls.flatMap((u) => ['-o', '/dev/null', '-w', '%{http_code} %{http_version}\\n', u])], {
    timeout: 60_000,
  });
  return stdout
    .trim()
    .split('\n')
    .map((l) => {
      const [status, http] = l.split(' ');
      return { status: Number(status), http };
    });
}

function noWorkerExitsSoFar(): void {
  expect(c.logLines().filter((l) => l.includes('data-plane worker exited'))).toEqual([]);
  expect(c.workerPids()).toEqual(workersAtStart);
}

describe('the default configuration (data-plane workers as shipped, TLS on) under real clients', () => {
  it('runs the shipped number of data-plane workers behind TLS', () => {
    expect(c.booster.workers).toBeGreaterThanOrEqual(2);
    expect(workersAtStart).toHaveLength(c.booster.workers);
  });

  for (const version of ['--http1.1', '--http2'] as const)
    it(`curl ${version}: every public path and every /_booster/ path, anonymous and as the admin`, async () => {
      const urls = PAGES.map(([p]) => c.url + p);
      const want = version === '--http2' ? '2' : '1.1';
      const anonymous = await curl(version, urls);
      expect(anonymous.map((r, i) => [PAGES[i][0], r.status, r.http])).toEqual(PAGES.map(([p, a]) => [p, a, want]));
      const admin = await curl(version, urls, ['-H', `Cookie: ${await c.adminCookie()}`]);
      expect(admin.map((r, i) => [PAGES[i][0], r.status])).toEqual(PAGES.map(([p, , a]) => [p, a]));
      // The operator token opens the read-only /_booster/ paths over TLS.
      const operator = await curl(
        version,
        [BOOSTER_PATH.status, BOOSTER_PATH.metrics, BOOSTER_PATH.events].map((p) => c.url + p),
        ['-H', `Authorization: Bearer ${OPERATOR_TOKEN}`],
      );
      expect(operator.map((r) => r.status)).toEqual([200, 200, 200]);
      // Unsigned calls to every signed /_booster/ POST are refused, never dropped.
      const posts = await curl(
        version,
        BOOSTER_POSTS.map((p) => c.url + p),
        ['-X', 'POST', '-H', 'content-type: application/json', '--data', '{}'],
      );
      expect(posts.map((r) => r.status)).toEqual(BOOSTER_POSTS.map(() => 401));
      // HEAD of the health check, as load balancers send it.
      expect((await curl(version, [c.url + BOOSTER_PATH.active], ['-I'])).map((r) => r.status)).toEqual([200]);
      noWorkerExitsSoFar();
    });

  it('nghttp: the sign-in page and the health check over HTTP/2, several streams on one connection', async () => {
    const { stdout } = await run('nghttp', ['-nv', '-m', '4', `${c.url}/login`, `${c.url}${BOOSTER_PATH.active}`], { timeout: 60_000 });
    const statuses = [...stdout.matchAll(/recv \(stream_id=\d+\) :status: (\d{3})/g)].map((m) => Number(m[1]));
    expect(statuses).toHaveLength(8);
    expect(new Set(statuses)).toEqual(new Set([200]));
    noWorkerExitsSoFar();
  });

  it('h2load: 2,000 requests over 4 HTTP/2 connections, 8 streams each, all answered 2xx', async () => {
    const { stdout } = await run('h2load', ['-n', '2000', '-c', '4', '-m', '8', `${c.url}/login`], { timeout: 120_000 });
    const m = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(stdout);
    const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
    console.log(`[real-clients] h2load /login: ${m?.[0]}; ${codes?.[0]}; ${/finished in [^\n]*/.exec(stdout)?.[0]}`);
    console.log(`[real-clients] booster after h2load: ${(await c.metrics(['requests_total', 'shed_total', 'concurrency_limit'])).join('; ')}`);
    expect(m?.slice(1).map(Number)).toEqual([2000, 2000, 2000, 2000, 0, 0]);
    expect(codes?.slice(1).map(Number)).toEqual([2000, 0, 0, 0]);
    noWorkerExitsSoFar();
  });

  it('undici over HTTP/1.1 and HTTP/2: the pages and the API as the admin', async () => {
    const cookie = await c.adminCookie();
    for (const allowH2 of [false, true]) {
      const agent = insecureAgent(allowH2);
      try {
        for (const [path, , admin] of PAGES) {
          const r = await fetch(c.url + path, { headers: { cookie }, redirect: 'manual', dispatcher: agent });
          await r.arrayBuffer();
          expect({ path, allowH2, status: r.status }).toEqual({ path, allowH2, status: admin });
        }
        // A ticket raised over this protocol, then read back.
        const csrf = /name="csrf" value="([^"]+)"/.exec(await (await fetch(`${c.url}/`, { headers: { cookie }, dispatcher: agent })).text())![1];
        const created = await fetch(`${c.url}/api/forms/it-request/tickets`, {
          method: 'POST',
          headers: { cookie, 'x-csrf-token': csrf, 'content-type': 'application/json' },
          body: JSON.stringify({ data: { title: `via undici h2=${allowH2}`, category: 'software', amount: 10 } }),
          dispatcher: agent,
        });
        expect(created.status).toBe(201);
        const { id } = (await created.json()) as { id: number };
        expect((await fetch(`${c.url}/api/tickets/${id}`, { headers: { cookie }, dispatcher: agent })).status).toBe(200);
      } finally {
        await agent.close();
      }
    }
    noWorkerExitsSoFar();
  });

  describe.skipIf(!haveChromium && !process.env.CI)('Chromium', () => {
    let browser: Browser;
    beforeAll(async () => {
      const { chromium } = await import('playwright-core');
      browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    });
    afterAll(async () => {
      await browser?.close();
    });

    it('signs in over HTTP/2 and opens every page: no Content-Security-Policy violation, no failed request, the page scripts run', {
      timeout: 180_000,
    }, async () => {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('requestfailed', (r) => problems.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
      page.on('response', (r) => {
        if (r.status() >= 400) problems.push(`${r.status()}: ${r.url()}`);
      });
      await page.goto(`${c.url}/login`);
      // Expressions run in the page (this file has no DOM types).
      expect(await page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")).toBe('h2');
      await page.fill('#username', ADMIN.user);
      await page.fill('#password', ADMIN.password);
      await Promise.all([page.waitForURL(`${c.url}/`), page.click('button[type=submit]')]);
      for (const path of [
        '/',
        '/tasks',
        '/tickets',
        '/forms/it-request/new',
        '/admin/users',
        '/admin/forms',
        '/admin/settings',
        '/admin/patches',
        '/admin/cluster',
      ]) {
        const r = await page.goto(c.url + path);
        expect({ path, status: r?.status() }).toEqual({ path, status: 200 });
        // The stylesheet applied (it is a file now, not an inline <style>).
        expect(await page.evaluate("getComputedStyle(document.querySelector('header')).display")).toBe('flex');
      }
      // The cluster page's script (a file, allowed by the CSP) polls and counts its polls.
      // (Polled from here: waitForFunction would evaluate a string in the page, which the CSP forbids.)
      await expect
        .poll(() => page.evaluate("Number(document.body.getAttribute('data-polls') || 0)"), { timeout: 20_000, interval: 250 })
        .toBeGreaterThanOrEqual(2);
      expect(problems).toEqual([]);
      await context.close();
      noWorkerExitsSoFar();
    });
  });
});

describe('password guessing through the booster', () => {
  it('40 parallel guesses at one account over HTTP/2 and HTTP/1.1 get no more tries than the lockout allows (5), and lock it', {
    timeout: 240_000,
  }, async () => {
    const users = createUsersService({ store: createUsersStore(t.knex), settings: createSettingsStore(t.knex) });
    await users.createUser({ username: 'victim', displayName: 'Victim', password: 'the-right-pass-1' });
    const agents = [insecureAgent(true, 4), insecureAgent(false, 8)];
    const guess = (i: number, password: string) =>
      fetch(`${c.url}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'victim', password }),
        dispatcher: agents[i % 2],
      }).then(async (r) => ({ status: r.status, code: ((await r.json()) as { code?: string }).code }));
    try {
      const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => guess(i, `wrong-guess-${i}`)));
      const tally = (code: string) => answers.filter((a) => a.code === code).length;
      const shed = answers.filter((a) => a.status === 503 && a.code?.startsWith('BOOSTER_ERR_')).length;
      console.log(
        `[real-clients] 40 parallel guesses: ${tally('SERVER_ERR_LOGIN_FAILED')} × 401 LOGIN_FAILED, ${tally('SERVER_ERR_ACCOUNT_LOCKED')} × 423 ACCOUNT_LOCKED, ${shed} × 503 shed by the booster (retry later)`,
      );
      // Four wrong guesses are told "wrong", the fifth locks the account, every other one finds it
      // locked (or was shed by the booster while the servers hashed: it never reached one).
      expect(tally('SERVER_ERR_LOGIN_FAILED')).toBe(4);
      expect(tally('SERVER_ERR_ACCOUNT_LOCKED')).toBeGreaterThanOrEqual(1);
      expect(tally('SERVER_ERR_LOGIN_FAILED') + tally('SERVER_ERR_ACCOUNT_LOCKED') + shed).toBe(40);
      // Locked even for the right password now.
      expect(await guess(0, 'the-right-pass-1')).toEqual({ status: 423, code: 'SERVER_ERR_ACCOUNT_LOCKED' });
    } finally {
      for (const a of agents) await a.close();
    }
  });
});

describe('HTTP/2 abuse on the default configuration, each case bounded', () => {
  const figures: string[] = [];
  afterAll(() => {
    for (const f of figures) console.log(f);
  });

  for (const abuse of ABUSE_CASES)
    it(`${abuse.name}: answered on the attacker's connection; other users served; no worker exits`, async () => {
      const exitsBefore = await c.workerExits();
      const users = otherUsers(c.url);
      // A moment of normal traffic first, so the share is over a window that includes the attack.
      await new Promise((r) => setTimeout(r, 500));
      const result = await abuse.run(c.port);
      await new Promise((r) => setTimeout(r, 500));
      const served = await users.stop();
      const exits = (await c.workerExits()) - exitsBefore;
      const share = served.total ? (100 * served.ok) / served.total : 0;
      const line = `[real-clients] ${abuse.name}: ${result.sent} in ${result.ms} ms -> ${describeOutcome(result.outcome)}; other users ${served.ok}/${served.total} served (${share.toFixed(2)} %); worker exits ${exits}`;
      figures.push(line);
      console.log(line);
      expect(exits, line).toBe(0);
      expect(share, `${line}; failures: ${served.failures.join(' | ')}`).toBeGreaterThanOrEqual(99);
      expect(served.total).toBeGreaterThan(20);
      noWorkerExitsSoFar();
    });

  it('the booster still serves every kind of client afterwards', async () => {
    // The attacker's held streams are given up as its connection closes; until then a user may
    // meet a full server (a 503 with its code). Served again within seconds, not never.
    let after: { status: number }[] = [];
    await waitFor(
      async () => {
        after = await curl('--http2', [`${c.url}/login`, c.url + BOOSTER_PATH.active]);
        return after.every((r) => r.status === 200);
      },
      { what: 'the booster serving /login and /_booster/active again', timeoutMs: 10_000, intervalMs: 250 },
    ).catch(() => {});
    expect(after.map((r) => r.status)).toEqual([200, 200]);
    expect(await c.workerExits()).toBe(0);
    noWorkerExitsSoFar();
  });
});
