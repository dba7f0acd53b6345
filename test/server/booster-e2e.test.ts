import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seed } from '../../server/seed.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { freePort } from '../helpers/processes.js';
import { OMFLOW, SECRET, type ServerProcess, startServerProcess } from './helpers.js';

/** The app server behind a real booster: requests are proxied with the epoch, steps are dispatched by the booster. */
for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`app server behind a real booster (${vendor})`, () => {
    let t: TestDatabase;
    let booster: ChildProcess;
    let boosterOut = '';
    let boosterUrl = '';
    let srv: ServerProcess;
    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: true });
      const port = await freePort();
      boosterUrl = `http://127.0.0.1:${port}`;
      booster = spawn(process.execPath, [OMFLOW, 'booster'], {
        env: {
          PATH: process.env.PATH,
          OMFLOW_DB_URL: t.url,
          OMFLOW_CLUSTER_SECRET: SECRET,
          OMFLOW_NODE_ID: 'booster-e2e',
          OMFLOW_LOG_LEVEL: 'warn',
          OMFLOW_BOOSTER_HOST: '127.0.0.1',
          OMFLOW_BOOSTER_PORT: String(port),
          OMFLOW_BOOSTER_SLOW_START_MS: '0',
          OMFLOW_DATA_DIR: '/tmp',
          // To the log stream: the test reads the ticket's line back.
          OMFLOW_BOOSTER_ACCESS_LOG: 'json',
          OMFLOW_BOOSTER_ACCESS_LOG_QUERY: 'keep',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      booster.stdout!.on('data', (d) => (boosterOut += d));
      booster.stderr!.on('data', (d) => (boosterOut += d));
      const deadline = Date.now() + 30_000;
      for (;;) {
        const ok = await fetch(`${boosterUrl}/_booster/active`).then(
          (r) => r.status === 200,
          () => false,
        );
        if (ok) break;
        if (Date.now() > deadline || booster.exitCode !== null) throw new Error(`booster did not become active:\n${boosterOut}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      srv = await startServerProcess({
        OMFLOW_DB_URL: t.url,
        OMFLOW_NODE_ID: 'srv-e2e',
        BOOSTER_IP: '127.0.0.1',
        BOOSTER_PORT: String(port),
        OMFLOW_SERVER_HEARTBEAT_MS: '200',
      });
    }, 90_000);
    afterAll(async () => {
      await srv?.stop();
      if (booster && booster.exitCode === null) {
        booster.kill('SIGTERM');
        await new Promise((r) => booster.once('exit', r));
      }
      await t?.drop();
    });

    it('a ticket raised through the booster runs its automatic steps on the server the booster dispatched them to', async () => {
      const deadline = Date.now() + 30_000;
      let login: Response | undefined;
      // Until the booster has the server's first heartbeat, it has nobody to proxy to.
      while (Date.now() < deadline) {
        login = await fetch(`${boosterUrl}/api/auth/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ username: 'admin', password: 'admin-pass-1' }),
        });
        if (login.status === 200) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(login!.status, boosterOut).toBe(200);
      const { token } = (await login!.json()) as { token: string };
      // A loaded machine may make the booster answer 503 for a moment (no healthy server): a client
      // retries with the same Idempotency-Key, which can never create a second ticket.
      let created: Response | undefined;
      let lastBody = '';
      // The client's W3C trace context: the booster passes it on, the steps the ticket queues keep it.
      const traceId = '0af7651916cd43dd8448eb211c80319c';
      while (Date.now() < deadline) {
        created = await fetch(`${boosterUrl}/api/forms/it-request/tickets`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${token}`,
            'idempotency-key': 'e2e-1',
            traceparent: `00-${traceId}-b7ad6b7169203331-01`,
          },
          body: JSON.stringify({ data: { title: 'via booster', category: 'software', amount: 5 } }),
        });
        if (created.status === 201) break;
        lastBody = await created.text();
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(created!.status, lastBody).toBe(201);
      expect(await t.knex('tickets').where({ title: 'via booster' }).count({ n: '*' }).first()).toMatchObject({ n: 1 });
      const { id } = (await created!.json()) as { id: number };
      let ticket: { state: string; currentStep: string; data: Record<string, unknown> } | undefined;
      while (Date.now() < deadline) {
        ticket = (await (await fetch(`${boosterUrl}/api/tickets/${id}`, { headers: { authorization: `Bearer ${token}` } })).json()) as typeof ticket;
        if (ticket!.state === 'open') break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(ticket).toMatchObject({ state: 'open', currentStep: 'approve', data: { approvalLevel: 'team', totalWithTax: 6 } });
      const steps = await t.knex('steps').where({ ticket_id: id }).orderBy('id');
      expect(steps.map((s) => [s.step_key, s.state, s.assigned_server])).toEqual([
        ['triage', 'done', 'srv-e2e'],
        ['small', 'done', 'srv-e2e'],
      ]);
      expect(steps.every((s) => Number(s.epoch) >= 1)).toBe(true);
      // triage was queued by the request (its trace), dispatched with it, and small, run after it on
      // the server the dispatch reached, carries it too: the dispatch passed it on.
      expect(steps.map((s) => String(s.trace_parent).slice(3, 35))).toEqual([traceId, traceId]);
      // The booster's access log has the request with the same trace id (its lines are buffered for up to 0.2 s).
      const accessLine = () =>
        boosterOut
          .split('\n')
          .filter((l) => l.includes('"msg":"access"') && l.includes('/api/forms/it-request/tickets'))
          .map((l) => JSON.parse(l) as { status: number; traceId: string; server: string })
          .find((l) => l.status === 201);
      const line = await waitFor(accessLine, { what: 'the ticket request in the access log' }).catch(() => accessLine());
      expect(line, boosterOut.slice(-3000)).toMatchObject({ traceId, server: 'srv-e2e' });
    }, 60_000);
  });
}
