import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyClusterRequest } from '../../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { type Heartbeat, parseHeartbeat } from '../../common/protocol/messages.js';
import { nextTicketNumber } from '../../server/features/tickets/numbering.js';
import { seed } from '../../server/seed.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { deployHumanFirstForm } from '../helpers/forms.js';
import { runCli, SECRET, type ServerProcess, startServerProcess } from './helpers.js';

async function json(url: string, init: RequestInit = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, { ...init, headers: { 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, headers: res.headers };
}

for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`two server processes on one ${vendor} database`, () => {
    let t: TestDatabase;
    let a: ServerProcess;
    let b: ServerProcess;
    let auth: Record<string, string>;
    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      const seeded = await runCli(['server', 'seed', '--admin-user', 'admin', '--admin-password', 'admin-pass-1', '--demo'], { OMFLOW_DB_URL: t.url });
      expect(seeded.code, seeded.stderr).toBe(0);
      expect(seeded.stdout).toMatch(/form it-request/);
      // Seeding again changes nothing (idempotent): still one flow version.
      await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: true });
      expect(await t.knex('flow_versions').count({ n: '*' }).first()).toMatchObject({ n: 1 });
      // 100 requests per server queue for 8 connections: allow a loaded CI machine time.
      const env = { OMFLOW_DB_URL: t.url, OMFLOW_DB_POOL_MAX: '8', OMFLOW_DB_CONNECT_TIMEOUT_MS: '30000', OMFLOW_SERVER_DISPATCH_POLL_MS: '100' };
      [a, b] = await Promise.all([startServerProcess({ ...env, OMFLOW_NODE_ID: 'srv-a' }), startServerProcess({ ...env, OMFLOW_NODE_ID: 'srv-b' })]);
      const login = await json(`${a.url}/api/auth/login`, { method: 'POST', body: JSON.stringify({ username: 'admin', password: 'admin-pass-1' }) });
      auth = { authorization: `Bearer ${login.body.token}` };
    }, 120_000);
    afterAll(async () => {
      const codes = await Promise.all([a?.stop(), b?.stop()]);
      await t?.drop();
      // Graceful stop exits cleanly.
      expect(codes).toEqual([0, 0]);
    });

    it('200 concurrent ticket creations spread across both servers: 200 tickets, 200 distinct numbers, none lost', async () => {
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          json(`${(i % 2 ? a : b).url}/api/forms/it-request/tickets`, {
            method: 'POST',
            headers: auth,
            body: JSON.stringify({ data: { title: `load ${i}`, category: 'software', amount: i } }),
          }),
        ),
      );
      expect(results.filter((r) => r.status !== 201).map((r) => r.body)).toEqual([]);
      const numbers = results.map((r) => r.body.number as string);
      expect(new Set(numbers).size).toBe(200);
      const rows = await t.knex('tickets').where('title', 'like', 'load %').select('ticket_no', 'title');
      expect(rows).toHaveLength(200);
      expect(new Set(rows.map((r) => r.ticket_no))).toEqual(new Set(numbers));
      // One sequence per prefix and no creation rolled back: exactly REQ-000001 … REQ-000200.
      expect([...numbers].sort()).toEqual(Array.from({ length: 200 }, (_, i) => `REQ-${String(i + 1).padStart(6, '0')}`));
      // Each was written with its first step's queue row, and its 'enter' history row names that row.
      for (const r of results.slice(0, 20)) {
        const [step] = await t.knex('steps').where({ ticket_id: r.body.id, step_key: 'triage' }).select('id');
        const enter = await t.knex('ticket_history').where({ ticket_id: r.body.id, action: 'enter', step: 'triage' }).first('output');
        expect(enter.output).toBe(JSON.stringify({ state: 'running', stepId: Number(step.id) }));
      }
      // Each server ran the automatic steps once: every ticket reaches the approval step.
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        const open = await t.knex('tickets').where('title', 'like', 'load %').andWhere({ state: 'open', current_step: 'approve' }).count({ n: '*' }).first();
        if (Number(open!.n) === 200) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      const open = await t.knex('tickets').where('title', 'like', 'load %').andWhere({ state: 'open', current_step: 'approve' }).count({ n: '*' }).first();
      expect(Number(open!.n)).toBe(200);
      const dup = await t
        .knex('ticket_history')
        .where({ action: 'step.done' })
        .groupBy('ticket_id', 'step')
        .select('ticket_id', 'step')
        .count({ n: '*' })
        .havingRaw('count(*) > 1');
      expect(dup).toEqual([]);
      const servers = new Set((await t.knex('steps').select('assigned_server')).map((r) => r.assigned_server));
      expect(servers.size).toBeGreaterThanOrEqual(1);
    }, 90_000);

    it('numbers keep increasing on either server; a rolled-back creation leaves a gap of its one number', async () => {
      const create = async (srv: ServerProcess, title: string) => {
        const r = await json(`${srv.url}/api/forms/it-request/tickets`, {
          method: 'POST',
          headers: auth,
          body: JSON.stringify({ data: { title, category: 'software', amount: 1 } }),
        });
        expect(r.status).toBe(201);
        return Number(String(r.body.number).slice('REQ-'.length));
      };
      const max = Number(String((await t.knex('tickets').max({ m: 'ticket_no' }).first())!.m).slice('REQ-'.length));
      const first = await create(a, 'after burst a');
      const second = await create(b, 'after burst b');
      expect(first).toBeGreaterThan(max);
      expect(second).toBeGreaterThan(first);
      // The sequence value is taken inside the ticket's transaction and is not given back on rollback.
      await expect(
        t.knex.transaction(async (trx) => {
          await nextTicketNumber(trx, 'REQ');
          throw new Error('rolled back');
        }),
      ).rejects.toThrow('rolled back');
      expect(await create(a, 'after rollback')).toBe(second + 2);
      // Past six digits the number grows and is never cut, wherever it is formatted (PostgreSQL: in the INSERT).
      if (vendor === 'postgres') await t.knex.raw(`SELECT setval('ticket_no_req', 999998)`);
      else await t.knex.raw('ALTER TABLE ticket_no_req AUTO_INCREMENT = 999999');
      const r = await json(`${b.url}/api/forms/it-request/tickets`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ data: { title: 'seven digits', category: 'software', amount: 1 } }),
      });
      expect(r.body.number).toBe('REQ-999999');
      const next = await json(`${a.url}/api/forms/it-request/tickets`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({ data: { title: 'seven digits', category: 'software', amount: 1 } }),
      });
      expect(next.body.number).toBe('REQ-1000000');
      expect((await t.knex('tickets').where({ id: next.body.id }).first('ticket_no')).ticket_no).toBe('REQ-1000000');
    });

    it('the same keyed POST sent to both servers at once creates one ticket; both answers carry it', async () => {
      for (let round = 0; round < 3; round++) {
        const key = `idem-${vendor}-${round}`;
        const body = JSON.stringify({ data: { title: `keyed ${round}`, category: 'access', amount: 1 } });
        const [x, y] = await Promise.all(
          [a, b].map((s) => json(`${s.url}/api/forms/it-request/tickets`, { method: 'POST', headers: { ...auth, 'idempotency-key': key }, body })),
        );
        expect([x.status, y.status]).toEqual([201, 201]);
        expect(x.body).toEqual(y.body);
        expect(
          await t
            .knex('tickets')
            .where({ title: `keyed ${round}` })
            .count({ n: '*' })
            .first(),
        ).toMatchObject({ n: 1 });
      }
      const mismatch = await json(`${b.url}/api/forms/it-request/tickets`, {
        method: 'POST',
        headers: { ...auth, 'idempotency-key': `idem-${vendor}-0` },
        body: JSON.stringify({ data: { title: 'other', category: 'access', amount: 2 } }),
      });
      expect(mismatch.status).toBe(422);
      expect(mismatch.body.code).toBe('SERVER_ERR_IDEMPOTENCY_MISMATCH');
    });

    it('a form that starts at a human step: every creation writes its ticket and both history rows, or nothing at all', async () => {
      // PostgreSQL writes such a creation as one statement (no transaction); MySQL in a transaction.
      await deployHumanFirstForm(t.db, { key: 'human-first', title: 'Human first', ticketPrefix: 'HUM', assignee: 'admin' });
      const create = (srv: ServerProcess, title: string) =>
        json(`${srv.url}/api/forms/human-first/tickets`, {
          method: 'POST',
          headers: auth,
          body: JSON.stringify({ data: { title, category: 'software', amount: 1 } }),
        });
      const results = await Promise.all(Array.from({ length: 40 }, (_, i) => create(i % 2 ? a : b, `human ${i}`)));
      expect(results.filter((r) => r.status !== 201).map((r) => r.body)).toEqual([]);
      expect(results.map((r) => r.body.number).sort()).toEqual(Array.from({ length: 40 }, (_, i) => `HUM-${String(i + 1).padStart(6, '0')}`));
      const adminId = (await t.knex('users').where({ username: 'admin' }).first('id')).id;
      for (const r of results) {
        expect(r.body).toMatchObject({ state: 'open', currentStep: 'review' });
        const row = await t.knex('tickets').where({ id: r.body.id }).first('ticket_no', 'state', 'current_step', 'assignee_user_id');
        expect(row).toMatchObject({ ticket_no: r.body.number, state: 'open', current_step: 'review', assignee_user_id: adminId });
        const history = await t.knex('ticket_history').where({ ticket_id: r.body.id }).orderBy('id').select('action', 'step', 'output');
        expect(history.map((h) => [h.action, h.step])).toEqual([
          ['create', null],
          ['enter', 'review'],
        ]);
        const entered = history[1].output;
        expect(typeof entered === 'string' ? JSON.parse(entered) : entered).toEqual({ state: 'open' });
      }
      // A history row the database refuses leaves no ticket behind: one atomic write. Its number is
      // taken and not given back (a gap of one), as with a rolled-back transaction.
      const input = vendor === 'postgres' ? 'input::text' : 'input';
      await t.knex.raw(`ALTER TABLE ticket_history ADD CONSTRAINT history_refuses_one CHECK (${input} IS NULL OR ${input} NOT LIKE '%refused history%')`);
      try {
        const refused = await create(b, 'refused history');
        expect(refused.status).toBeGreaterThanOrEqual(500);
        expect(await t.knex('tickets').where({ title: 'refused history' }).count({ n: '*' }).first()).toMatchObject({ n: 0 });
      } finally {
        await t.knex.raw('ALTER TABLE ticket_history DROP CONSTRAINT history_refuses_one');
      }
      const after = await create(a, 'after the refused one');
      expect(after.body.number).toBe('HUM-000042');
      expect(await t.knex('ticket_history').where({ ticket_id: after.body.id }).count({ n: '*' }).first()).toMatchObject({ n: 2 });
    });

    it('sessions live in the database: a token from one server works on the other; /readyz checks the database', async () => {
      const me = await json(`${b.url}/api/auth/me`, { headers: auth });
      expect(me.body.user.username).toBe('admin');
      const ready = await json(`${b.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({ status: 'ready', nodeId: 'srv-b' });
      // Idle: the probe does not count itself, so an agent's drain wait ends at once.
      expect((await json(`${a.url}/healthz`)).body).toMatchObject({ status: 'ok', nodeId: 'srv-a', inflight: 0 });
    });
  });
}

for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`graceful stop gives back step leases (${vendor})`, () => {
    let t: TestDatabase;
    let hang: Server;
    let srv: ServerProcess;
    const hanging: Array<() => void> = [];
    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
      await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: false });
      // An external system that never answers (until the test ends).
      hang = createServer((_req, res) => hanging.push(() => res.end('late')));
      await new Promise<void>((r) => hang.listen(0, '127.0.0.1', () => r()));
      const hookUrl = `http://127.0.0.1:${(hang.address() as { port: number }).port}/slow`;
      srv = await startServerProcess({
        OMFLOW_DB_URL: t.url,
        OMFLOW_NODE_ID: 'srv-stop',
        OMFLOW_SERVER_STOP_TIMEOUT_MS: '500',
        OMFLOW_SERVER_DISPATCH_POLL_MS: '100',
      });
      const login = await json(`${srv.url}/api/auth/login`, { method: 'POST', body: JSON.stringify({ username: 'admin', password: 'admin-pass-1' }) });
      const auth = { authorization: `Bearer ${login.body.token}` };
      const flow = await json(`${srv.url}/api/flows`, {
        method: 'POST',
        headers: auth,
        body: JSON.stringify({
          flowKey: 'slow',
          name: 'Slow',
          ticketPrefix: 'SLW',
          definition: { start: 'call', steps: { call: { type: 'http', url: hookUrl, timeoutMs: 60_000, next: 'done' }, done: { type: 'end' } } },
        }),
      });
      expect(flow.status, JSON.stringify(flow.body)).toBe(201);
      expect(
        (
          await json(`${srv.url}/api/forms`, {
            method: 'POST',
            headers: auth,
            body: JSON.stringify({ formKey: 'slow', title: 'Slow', flowKey: 'slow', fields: [] }),
          })
        ).status,
      ).toBe(201);
      expect((await json(`${srv.url}/api/forms/slow/tickets`, { method: 'POST', headers: auth, body: JSON.stringify({ data: {} }) })).status).toBe(201);
    }, 60_000);
    afterAll(async () => {
      await srv?.stop();
      for (const end of hanging) end();
      await new Promise<void>((r) => hang.close(() => r()));
      await t?.drop();
    });

    it('SIGTERM while a step runs: the process exits in bounded time and the step is back in the queue', async () => {
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && hanging.length === 0) await new Promise((r) => setTimeout(r, 50));
      expect(hanging.length).toBe(1);
      expect(await t.knex('steps').first('state', 'assigned_server')).toEqual({ state: 'assigned', assigned_server: 'srv-stop' });
      const started = Date.now();
      expect(await srv.stop()).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000);
      expect(await t.knex('steps').first('state', 'assigned_server')).toEqual({ state: 'ready', assigned_server: null });
      expect(await t.knex('tickets').first('state', 'current_step')).toEqual({ state: 'running', current_step: 'call' });
    }, 30_000);
  });
}

describe('heartbeats to a booster pair, fencing from replies, graceful stop', () => {
  let t: TestDatabase;
  const boosters: Server[] = [];
  const received: Array<{ booster: number; hb: Heartbeat; authOk: boolean }> = [];
  const hints: Array<{ booster: number; authOk: boolean }> = [];
  let srv: ServerProcess;
  beforeAll(async () => {
    t = await createTestDatabase('postgres', { migrate: true });
    const ports: number[] = [];
    for (const idx of [0, 1]) {
      const s = createServer((req, res) => {
        let body = '';
        req.on('data', (d) => (body += d));
        req.on('end', () => {
          const authOk = verifyClusterRequest(SECRET, { method: req.method!, path: req.url!, headers: req.headers, body }).ok;
          if (req.url === BOOSTER_PATH.heartbeat) received.push({ booster: idx, hb: parseHeartbeat(JSON.parse(body)), authOk });
          if (req.url === BOOSTER_PATH.stepsReady) hints.push({ booster: idx, authOk });
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ role: idx === 0 ? 'active' : 'standby', epoch: 7, boosterId: `b${idx}`, activeUrl: null }));
        });
      });
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
      boosters.push(s);
      ports.push((s.address() as { port: number }).port);
    }
    await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: true });
    srv = await startServerProcess({
      OMFLOW_DB_URL: t.url,
      OMFLOW_NODE_ID: 'srv-hb',
      BOOSTER_IP: '127.0.0.1',
      BOOSTER_PORT: String(ports[0]),
      SECOND_BOOSTER_IP: '127.0.0.1',
      SECOND_BOOSTER_PORT: String(ports[1]),
      OMFLOW_SERVER_HEARTBEAT_MS: '200',
      OMFLOW_AGENT_URL: 'http://127.0.0.1:5999',
      OMFLOW_SERVER_VERSION: '9.9.9-test',
    });
  }, 60_000);
  afterAll(async () => {
    await srv?.stop();
    for (const s of boosters) await new Promise<void>((r) => s.close(() => r()));
    await t?.drop();
  });

  it('a ticket that reaches an automatic step wakes both boosters with a signed steps-ready hint', async () => {
    const login = await fetch(`${srv.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'admin-pass-1' }),
    });
    const { token } = (await login.json()) as { token: string };
    const created = await fetch(`${srv.url}/api/forms/it-request/tickets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ data: { title: 'hint', category: 'software', amount: 1 } }),
    });
    expect(created.status).toBe(201);
    const deadline = Date.now() + 10_000;
    while (new Set(hints.map((h) => h.booster)).size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(new Set(hints.map((h) => h.booster))).toEqual(new Set([0, 1]));
    expect(hints.every((h) => h.authOk)).toBe(true);
  }, 30_000);

  it('a ticket that waits at a human step sends no hint: the boosters would find nothing to dispatch', async () => {
    await deployHumanFirstForm(t.db, { key: 'human-first', title: 'Human first', ticketPrefix: 'HUM', assignee: 'admin' });
    const login = await fetch(`${srv.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'admin-pass-1' }),
    });
    const { token } = (await login.json()) as { token: string };
    const raise = (formKey: string) =>
      fetch(`${srv.url}/api/forms/${formKey}/tickets`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ data: { title: 'no hint', category: 'software', amount: 1 } }),
      });
    const hintsBefore = hints.length;
    expect((await raise('human-first')).status).toBe(201);
    // A hint goes out right after the commit; three more heartbeats at both boosters come after it.
    const beats = (i: number) => received.filter((r) => r.booster === i).length;
    const [b0, b1] = [beats(0), beats(1)];
    const deadline = Date.now() + 10_000;
    while ((beats(0) < b0 + 3 || beats(1) < b1 + 3) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(beats(0)).toBeGreaterThanOrEqual(b0 + 3);
    expect(hints.length).toBe(hintsBefore);
    // The same channel carries the hint of a ticket at an automatic step.
    expect((await raise('it-request')).status).toBe(201);
    while (hints.length === hintsBefore && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(hints.length).toBeGreaterThan(hintsBefore);
  }, 30_000);

  it('reports load to both boosters in order, signed; learns the epoch; reports draining and exits on SIGTERM', async () => {
    const deadline = Date.now() + 15_000;
    while (received.filter((r) => r.booster === 1).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(received.every((r) => r.authOk)).toBe(true);
    const first = received.find((r) => r.booster === 0)!.hb;
    expect(first).toMatchObject({ nodeId: 'srv-hb', url: srv.url, version: '9.9.9-test', agentUrl: 'http://127.0.0.1:5999', draining: false, stepCapacity: 8 });
    expect(first.dbPool).toEqual({ used: expect.any(Number), waiting: expect.any(Number) });
    expect(first.rssBytes).toBeGreaterThan(0);
    // Same message to the active first, then the standby (same seq, active before standby).
    const seqs = received.filter((r) => r.hb.seq === first.seq).map((r) => r.booster);
    expect(seqs).toEqual([0, 1]);
    const later = received.filter((r) => r.booster === 0).at(-1)!.hb;
    expect(later.epochSeen).toBe(7);
    // The reply's epoch fences proxied requests from an older booster.
    const stale = await fetch(`${srv.url}/api/auth/me`, { headers: { 'x-booster-epoch': '6' } });
    expect(stale.status).toBe(409);
    expect(((await stale.json()) as { code: string }).code).toBe('SERVER_ERR_STALE_EPOCH');
    const n = received.length;
    expect(await srv.stop()).toBe(0);
    expect(received.slice(n).some((r) => r.hb.draining)).toBe(true);
  }, 30_000);
});
