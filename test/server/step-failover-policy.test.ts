import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../booster/booster.js';
import { seed } from '../../server/seed.js';
import { boosterConfig, silentLog } from '../booster/fixtures.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { type ServerProcess, startServerProcess } from './helpers.js';

/**
 * The re-run policy end to end, with real app servers (processes) behind a real booster: an
 * http step marked `onFailover: 'abort'` whose server is killed while the step waits on the
 * external system is never run again: it is quarantined, its ticket is marked, and the
 * administrator decides on the Cluster page (fail the ticket, or run the step again, which then
 * completes once). Nothing is applied twice: the external system sees one call per decision.
 */
async function hookServer() {
  const calls: string[] = [];
  let hang = true;
  const held: ServerResponse[] = [];
  const srv: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    calls.push(String(req.headers['idempotency-key']));
    req.resume();
    if (hang) held.push(res);
    else res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as { port: number }).port}/hook`,
    calls,
    answer() {
      hang = false;
    },
    async close() {
      for (const r of held) r.destroy();
      srv.closeAllConnections();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`step re-run policy with real servers on ${vendor}`, () => {
    let t: TestDatabase;
    let booster: Booster;
    let boosterUrl = '';
    let hook: Awaited<ReturnType<typeof hookServer>>;
    const servers = new Map<string, ServerProcess>();

    const startServer = async (id: string) => {
      const port = new URL(boosterUrl).port;
      servers.set(
        id,
        await startServerProcess({
          OMFLOW_DB_URL: t.url,
          OMFLOW_NODE_ID: id,
          OMFLOW_SERVER_HOST: '127.0.0.1',
          BOOSTER_IP: '127.0.0.1',
          BOOSTER_PORT: port,
          OMFLOW_SERVER_HEARTBEAT_MS: '200',
        }),
      );
    };

    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: false });
      hook = await hookServer();
      booster = createBooster({
        config: boosterConfig('pol-booster', { OMFLOW_BOOSTER_STEP_LEASE_MS: 1500, OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: 1500 }),
        db: t.db,
        log: silentLog,
      });
      boosterUrl = await booster.listen();
    }, 60_000);
    afterAll(async () => {
      for (const s of servers.values()) await s.stop();
      await booster?.close();
      await hook?.close();
      await t?.drop();
    });

    it('a killed run of an abort-after-failover step is quarantined and its ticket marked; the admin fails the ticket or runs the step again, once', async () => {
      await startServer('pol-1');
      await startServer('pol-2');
      await waitFor(async () => booster.table.routable.length === 2, { what: 'both servers routable', timeoutMs: 30_000 });
      const api = async (path: string, init: { method?: string; body?: unknown; token?: string } = {}) => {
        const r = await fetch(boosterUrl + path, {
          method: init.method ?? 'GET',
          headers: { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}) },
          body: init.body === undefined ? undefined : JSON.stringify(init.body),
        });
        return { status: r.status, body: (await r.json()) as Record<string, unknown> & { token: string; id: number } };
      };
      const { token } = (await api('/api/auth/login', { method: 'POST', body: { username: 'admin', password: 'admin-pass-1' } })).body;
      const flow = await api('/api/flows', {
        method: 'POST',
        token,
        body: {
          flowKey: 'crm',
          name: 'CRM sync',
          ticketPrefix: 'CRM',
          definition: {
            start: 'push',
            steps: { push: { type: 'http', url: hook.url, retries: 0, timeoutMs: 120_000, onFailover: 'abort', next: 'done' }, done: { type: 'end' } },
          },
        },
      });
      expect(flow.status, JSON.stringify(flow.body)).toBe(201);
      const bad = await api('/api/flows', {
        method: 'POST',
        token,
        body: {
          flowKey: 'bad',
          name: 'Bad',
          ticketPrefix: 'BAD',
          definition: { start: 'x', steps: { x: { type: 'compute', set: {}, maxRuns: 0, onFailover: 'later', next: 'e' }, e: { type: 'end' } } },
        },
      });
      expect(bad.status).toBe(400);
      expect(JSON.stringify(bad.body)).toContain('steps.x.onFailover must be rerun or abort');
      expect(JSON.stringify(bad.body)).toContain('steps.x.maxRuns must be an integer from 1 to 100');
      expect((await api('/api/forms', { method: 'POST', token, body: { formKey: 'crm', title: 'CRM', flowKey: 'crm', fields: [] } })).status).toBe(201);

      /** Raises a ticket and waits until a server runs its step (the hook holds the call); returns the ticket, step and server. */
      const raise = async () => {
        const calls = hook.calls.length;
        const created = await api('/api/forms/crm/tickets', { method: 'POST', token, body: { data: {} } });
        expect(created.status).toBe(201);
        await waitFor(async () => hook.calls.length > calls, { what: 'the step calls the external system', timeoutMs: 30_000 });
        const step = await t.knex('steps').where({ ticket_id: created.body.id, step_key: 'push' }).first();
        expect(step).toMatchObject({ on_failover: 'abort', state: 'assigned' });
        return { ticketId: created.body.id, stepId: Number(step.id), server: step.assigned_server as string };
      };
      const killRunner = async (server: string) => {
        const p = servers.get(server)!;
        p.child.kill('SIGKILL');
        await new Promise((r) => p.child.once('exit', r));
        servers.delete(server);
      };
      const quarantined = (stepId: number) =>
        waitFor(async () => (await t.knex('steps').where('id', stepId).first()).state === 'quarantined', { what: 'step quarantined', timeoutMs: 30_000 });

      // 1. The server running the step dies: the step is not run again, it waits for the admin.
      const first = await raise();
      await killRunner(first.server);
      await quarantined(first.stepId);
      await new Promise((r) => setTimeout(r, 2000)); // a few dispatch rounds: still quarantined, not re-run
      expect(hook.calls).toHaveLength(1);
      expect(await t.knex('steps').where('id', first.stepId).first()).toMatchObject({
        state: 'quarantined',
        quarantine_reason: 'aborted-after-failover',
        lost_runs: 1,
      });
      const detail = await api(`/api/tickets/${first.ticketId}`, { token });
      expect(detail.body).toMatchObject({
        state: 'running',
        heldStep: { stepId: first.stepId, stepKey: 'push', reason: 'aborted-after-failover', lostRuns: 1 },
      });
      const event = await t
        .knex('booster_events')
        .where({ kind: 'step-quarantined', subject: String(first.stepId) })
        .first();
      expect(event).toBeTruthy();

      // The admin page lists it; "Fail the ticket" closes the ticket, nothing runs.
      const login = await fetch(`${boosterUrl}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'username=admin&password=admin-pass-1&next=/admin/cluster',
      });
      const cookie = String(login.headers.get('set-cookie')).split(';')[0];
      const page = async () => (await fetch(`${boosterUrl}/admin/cluster`, { headers: { cookie } })).text();
      const html = await page();
      expect(html).toContain(`data-step="${first.stepId}"`);
      const csrf = /name="csrf" value="([^"]+)"/.exec(html)?.[1] ?? '';
      const act = (stepId: number, action: string) =>
        fetch(`${boosterUrl}/admin/cluster/steps/${stepId}/${action}`, {
          method: 'POST',
          redirect: 'manual',
          headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
          body: `csrf=${encodeURIComponent(csrf)}`,
        });
      const failed = await act(first.stepId, 'fail');
      expect(failed.status).toBe(303);
      expect(failed.headers.get('location')).toContain('done=failed');
      expect((await api(`/api/tickets/${first.ticketId}`, { token })).body).toMatchObject({ state: 'failed', heldStep: null });
      expect((await t.knex('steps').where('id', first.stepId).first()).state).toBe('failed');
      expect((await act(first.stepId, 'requeue')).headers.get('location')).toContain('error=SERVER_ERR_NOT_FOUND');

      // 2. Again on the other server; this time the admin runs it again once the external system answers.
      const second = await raise();
      await killRunner(second.server);
      // No server is left: the lapsed step waits; a new server does not get it, it is quarantined.
      await startServer('pol-3');
      await quarantined(second.stepId);
      expect(hook.calls.filter((k) => k === `step-${second.stepId}`)).toHaveLength(1);
      hook.answer();
      const requeued = await act(second.stepId, 'requeue');
      expect(requeued.headers.get('location')).toContain('done=requeued');
      await waitFor(async () => (await api(`/api/tickets/${second.ticketId}`, { token })).body.state === 'completed', {
        what: 'ticket completed after the run again',
        timeoutMs: 30_000,
      });
      expect(hook.calls.filter((k) => k === `step-${second.stepId}`)).toHaveLength(2);
      const history = (await t.knex('ticket_history').where('ticket_id', second.ticketId).orderBy('id')).map((h) => h.action);
      expect(history).toContain('step.requeued');
      expect(history.filter((a) => a === 'step.done')).toHaveLength(1);
    }, 180_000);
  });
}
