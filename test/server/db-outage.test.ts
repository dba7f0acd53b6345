import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../../common/db/create-database.js';
import { migrateLatest } from '../../common/db/migrate.js';
import { freePort } from '../../common/free-port.js';
import { groupAlive } from '../../common/process-group.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { type EmbeddedDb, startEmbeddedDb } from '../../install/dev-cluster/embedded-db.js';
import { seed } from '../../server/seed.js';
import { type AgentNode, killServerGroup, makeAgentNode, serverPid, startBoosterRecorder, waitForState } from '../agent/harness.js';
import { createTestDatabase, dbConfig, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { isAlive, stopAll } from '../helpers/processes.js';
import { TcpRelay } from '../helpers/tcp-relay.js';
import { type ServerProcess, startServerProcess } from './helpers.js';

/**
 * A real app server (started by its real agent) whose only way to PostgreSQL is a TCP relay
 * in this test. Cutting the relay is a database restart as the processes see it: every
 * connection reset, new ones refused. The database itself keeps running, so the test reads
 * the outcome directly.
 */
const OUTAGE_MS = 3000;

async function call(url: string, init: RequestInit = {}): Promise<{ status: number; body: any; headers: Headers; tookMs: number; text: string }> {
  const started = Date.now();
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  return { status: res.status, body, headers: res.headers, tookMs: Date.now() - started, text };
}

/** pino lines of a log with this exact message. */
function linesWith(log: string, msg: string): Record<string, unknown>[] {
  return log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        return {};
      }
    })
    .filter((l) => l.msg === msg);
}

function relayedUrl(tdb: TestDatabase, relay: TcpRelay): string {
  const u = new URL(tdb.url);
  u.hostname = '127.0.0.1';
  u.port = String(relay.port);
  return u.toString();
}

function newRelay(tdb: TestDatabase): TcpRelay {
  const u = new URL(tdb.url);
  return new TcpRelay(u.hostname, Number(u.port || 5432));
}

describe('a 3 s database outage under a real agent and app server', () => {
  let tdb: TestDatabase;
  let relay: TcpRelay;
  let recorder: Awaited<ReturnType<typeof startBoosterRecorder>>;
  let node: AgentNode;
  let base = '';

  beforeAll(async () => {
    tdb = await createTestDatabase('postgres', { migrate: true });
    await seed(tdb.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: false });
    relay = newRelay(tdb);
    await relay.start();
    recorder = await startBoosterRecorder();
    node = await makeAgentNode({
      nodeId: 'dbo-1',
      dbUrl: relayedUrl(tdb, relay),
      boosterPort: recorder.port,
      extraEnv: {
        OMFLOW_AGENT_START_TIMEOUT_MS: '60000',
        OMFLOW_AGENT_STOP_TIMEOUT_MS: '15000',
        OMFLOW_LOG_LEVEL: 'info',
        // Far above what the test accepts as "fast": a 503 only after it would fail the test.
        OMFLOW_DB_CONNECT_TIMEOUT_MS: '10000',
        OMFLOW_DB_OUTAGE_GRACE_MS: '10000',
        OMFLOW_SERVER_HEARTBEAT_MS: '300',
      },
    });
    // The real app server of this checkout, not the fixture release.
    delete node.env.OMFLOW_AGENT_BOOTSTRAP_DIR;
    node.start();
    await waitForState(node, 'running', 90_000);
    base = `http://127.0.0.1:${node.serverPort}`;
  }, 120_000);

  afterAll(async () => {
    await stopAll();
    if (node) killServerGroup(node);
    await recorder?.close();
    await relay?.stop();
    await tdb?.drop();
    if (node) rmSync(node.dataDir, { recursive: true, force: true });
  });

  it('fails fast with 503 SERVER_ERR_DB_UNAVAILABLE + Retry-After, stays ready, and serves again with the same process', async () => {
    const login = await call(`${base}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'admin-pass-1' }),
    });
    expect(login.status).toBe(200);
    const auth = { authorization: `Bearer ${login.body.token}` };
    expect((await call(`${base}/api/tickets`, { headers: auth })).status).toBe(200);
    const pid = serverPid(node)!;
    const heartbeats = () => recorder.calls.filter((c) => c.path === BOOSTER_PATH.heartbeat && c.node === 'dbo-1');
    const callsBefore = recorder.calls.length;
    const agentStatesSinceCut = () =>
      recorder.calls
        .slice(callsBefore)
        .filter((c) => c.path === BOOSTER_PATH.agentReport)
        .map((c) => c.body.state as string);
    const heartbeatsBefore = heartbeats().length;

    relay.cut();
    const cutAt = Date.now();
    let firstMs = 0;
    let fastMs = 0;
    try {
      // The first request finds its pooled connection dead and a new one refused: a 503 at once.
      const first = await call(`${base}/api/tickets`, { headers: auth });
      expect(first.status).toBe(503);
      expect(first.body.code).toBe('SERVER_ERR_DB_UNAVAILABLE');
      expect(first.headers.get('retry-after')).toBe('2');
      expect(first.tookMs).toBeLessThan(5000);
      firstMs = first.tookMs;

      // Once the server knows, requests are refused without touching the pool at all.
      await waitFor(async () => (await call(`${base}/healthz`)).body.database === 'unreachable', {
        timeoutMs: 2500,
        intervalMs: 50,
        what: 'server sees the outage',
      });
      const fast = await call(`${base}/api/tickets`, { headers: auth });
      expect(fast.status).toBe(503);
      expect(fast.body).toMatchObject({ code: 'SERVER_ERR_DB_UNAVAILABLE' });
      expect(fast.headers.get('retry-after')).toBe('2');
      expect(fast.tookMs).toBeLessThan(2000);
      fastMs = fast.tookMs;

      // A browser gets a page that says what happened.
      const page = await call(`${base}/tickets`, { headers: { ...auth, accept: 'text/html' } });
      expect(page.status).toBe(503);
      expect(page.headers.get('content-type')).toMatch(/text\/html/);
      expect(page.text).toContain('The database cannot be reached right now');

      // Within the grace the server stays ready for boosters and its agent.
      const ready = await call(`${base}/readyz`);
      expect(ready.status).toBe(200);
      expect(ready.body).toMatchObject({ status: 'ready', database: 'unreachable' });

      await new Promise((r) => setTimeout(r, Math.max(0, cutAt + OUTAGE_MS - Date.now())));
      // Heartbeats do not need the database: they went on and said so.
      const during = heartbeats().slice(heartbeatsBefore);
      expect(during.length).toBeGreaterThanOrEqual(2);
      expect(during.some((h) => typeof h.body.dbUnreachableMs === 'number' && h.body.dbUnreachableMs > 0)).toBe(true);
    } finally {
      relay.restore();
    }
    const restoredAt = Date.now();

    // Back: the pool reconnects by itself, same process.
    await waitFor(async () => (await call(`${base}/api/tickets`, { headers: auth })).status === 200, {
      timeoutMs: 15_000,
      intervalMs: 100,
      what: 'requests succeed again',
    });
    const backMs = Date.now() - restoredAt;
    expect(serverPid(node)).toBe(pid);
    expect(isAlive(pid)).toBe(true);
    expect((await call(`${base}/readyz`)).body).toMatchObject({ status: 'ready' });
    expect((await call(`${base}/healthz`)).body.database).toBe('reachable');

    // The agent neither restarted nor failed the server.
    const reported = agentStatesSinceCut();
    expect(reported.length).toBeGreaterThan(0);
    expect(reported.filter((s) => s !== 'running')).toEqual([]);
    expect((await waitForState(node, 'running', 5000)).state).toBe('running');

    // One line when it went away, one when it came back, in each process.
    const serverLog = () => readFileSync(join(node.dataDir, 'logs', 'server.log'), 'utf8');
    await waitFor(() => linesWith(serverLog(), 'database reachable again').length > 0 && linesWith(node.proc.output(), 'database reachable again').length > 0, {
      timeoutMs: 10_000,
      what: 'reachable-again lines',
    });
    const serverDownMs = linesWith(serverLog(), 'database reachable again')[0]?.downMs;
    const agentDownMs = linesWith(node.proc.output(), 'database reachable again')[0]?.downMs;
    console.log(
      `outage ${OUTAGE_MS} ms: first 503 in ${firstMs} ms, known-outage 503 in ${fastMs} ms, back after restore in ${backMs} ms; downMs server ${serverDownMs}, agent ${agentDownMs}`,
    );
    for (const [who, log] of [
      ['server', serverLog()],
      ['agent', node.proc.output()],
    ] as const) {
      expect(linesWith(log, 'database unreachable'), who).toHaveLength(1);
      const back = linesWith(log, 'database reachable again');
      expect(back, who).toHaveLength(1);
      expect(back[0].downMs as number, who).toBeGreaterThanOrEqual(1000);
      expect(back[0].downMs as number, who).toBeLessThan(OUTAGE_MS + 10_000);
    }
  }, 90_000);
});

describe('a step in flight when the database goes away runs to completion exactly once', () => {
  let tdb: TestDatabase;
  let relay: TcpRelay;
  let hook: Server;
  let srv: ServerProcess;
  const calls: { key: string | undefined; answer: () => void }[] = [];

  beforeAll(async () => {
    tdb = await createTestDatabase('postgres', { migrate: true });
    await seed(tdb.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: false });
    relay = newRelay(tdb);
    await relay.start();
    // The external system of the http step: answers when the test says so.
    hook = createServer((req, res) => {
      req.resume();
      calls.push({
        key: req.headers['idempotency-key'] as string | undefined,
        answer: () => void (res.headersSent || res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')),
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
    srv = await startServerProcess({
      OMFLOW_DB_URL: relayedUrl(tdb, relay),
      OMFLOW_NODE_ID: 'dbo-steps',
      OMFLOW_SERVER_DISPATCH_POLL_MS: '100',
      OMFLOW_SERVER_STEP_LEASE_MS: '2000',
      OMFLOW_LOG_LEVEL: 'info',
    });
  }, 60_000);

  afterAll(async () => {
    await srv?.stop();
    for (const c of calls) c.answer();
    await new Promise<void>((r) => (hook ? hook.close(() => r()) : r()));
    await relay?.stop();
    await tdb?.drop();
  });

  it('the commit fails during the outage, the lease lapses, the step runs again after it: one result, one history entry', async () => {
    const post = async (path: string, body: unknown, auth: Record<string, string> = {}) =>
      call(`${srv.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify(body) });
    const login = await post('/api/auth/login', { username: 'admin', password: 'admin-pass-1' });
    const auth = { authorization: `Bearer ${login.body.token}` };
    const hookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook`;
    const flow = await post(
      '/api/flows',
      {
        flowKey: 'outage',
        name: 'Outage',
        ticketPrefix: 'OUT',
        definition: { start: 'call', steps: { call: { type: 'http', url: hookUrl, timeoutMs: 60_000, retries: 0, next: 'done' }, done: { type: 'end' } } },
      },
      auth,
    );
    expect(flow.status, JSON.stringify(flow.body)).toBe(201);
    expect((await post('/api/forms', { formKey: 'outage', title: 'Outage', flowKey: 'outage', fields: [] }, auth)).status).toBe(201);
    const ticket = await post('/api/forms/outage/tickets', { data: {} }, auth);
    expect(ticket.status).toBe(201);

    // The step is running (the hook holds its answer); now the database goes away.
    await waitFor(() => calls.length === 1, { timeoutMs: 20_000, what: 'the step calls the hook' });
    relay.cut();
    try {
      calls[0].answer(); // the step finishes while the database is unreachable: its commit fails
      await waitFor(() => srv.output().includes('step run failed; the lease will lapse and it runs again'), { timeoutMs: 10_000, what: 'the commit fails' });
      await new Promise((r) => setTimeout(r, OUTAGE_MS));
      expect(await tdb.knex('steps').where({ ticket_id: ticket.body.id }).first('state')).toEqual({ state: 'assigned' });
    } finally {
      relay.restore();
    }

    // After the outage the lease lapses and the step is dispatched again; this time it commits.
    await waitFor(() => calls.length === 2, { timeoutMs: 20_000, what: 'the step runs again' });
    calls[1].answer();
    await waitFor(async () => (await tdb.knex('steps').where({ ticket_id: ticket.body.id }).first('state'))?.state === 'done', {
      timeoutMs: 20_000,
      what: 'the step is done',
    });
    const history = await tdb.knex('ticket_history').where({ ticket_id: ticket.body.id, action: 'step.done' });
    expect(history).toHaveLength(1);
    expect(calls.map((c) => c.key)).toEqual([calls[0].key, calls[0].key]); // the same Idempotency-Key both times
    expect(calls[0].key).toMatch(/^step-\d+$/);
    const t = await tdb.knex('tickets').where({ id: ticket.body.id }).first('state');
    expect(t.state).not.toBe('running');
    // Exactly one outage, logged once each way.
    expect(linesWith(srv.output(), 'database unreachable')).toHaveLength(1);
    expect(linesWith(srv.output(), 'database reachable again')).toHaveLength(1);
  }, 90_000);
});

describe('a real PostgreSQL restart (fast shutdown, start again on the same port)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'omflow-pg-restart-'));
  let pgPort = 0;
  let pgDb: EmbeddedDb;
  let srv: ServerProcess;
  const startPg = () => startEmbeddedDb({ dir, port: pgPort, fresh: false, logFile: join(dir, 'postgres.log'), onProgress: () => {}, maxConnections: 50 });

  beforeAll(async () => {
    pgPort = await freePort();
    pgDb = await startPg();
    const db = createDatabase(dbConfig(pgDb.url, { poolMax: 2 }));
    try {
      await migrateLatest(db.knex);
      await seed(db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: false });
    } finally {
      await db.destroy();
    }
    srv = await startServerProcess({ OMFLOW_DB_URL: pgDb.url, OMFLOW_NODE_ID: 'dbo-restart', OMFLOW_LOG_LEVEL: 'info', OMFLOW_DB_CONNECT_TIMEOUT_MS: '10000' });
  }, 120_000);

  afterAll(async () => {
    await srv?.stop();
    await pgDb?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pooled connections killed by the restart are replaced; requests fail fast meanwhile and succeed after, same process', async () => {
    const login = await call(`${srv.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'admin-pass-1' }),
    });
    const auth = { authorization: `Bearer ${login.body.token}` };
    // Several pooled connections, all of which the restart will terminate (57P01).
    await Promise.all([1, 2, 3, 4].map(() => call(`${srv.url}/api/tickets`, { headers: auth })));
    const pid = srv.child.pid!;

    // Fast shutdown (SIGINT): backends are terminated, as in `pg_ctl restart -m fast`.
    process.kill(-pgDb.process.pid, 'SIGINT');
    for (let i = 0; i < 300 && groupAlive(pgDb.process.pid); i++) await new Promise((r) => setTimeout(r, 50));
    expect(groupAlive(pgDb.process.pid)).toBe(false);
    const down = await call(`${srv.url}/api/tickets`, { headers: auth });
    expect(down.status).toBe(503);
    expect(down.body.code).toBe('SERVER_ERR_DB_UNAVAILABLE');
    expect(down.tookMs).toBeLessThan(5000);

    pgDb = await startPg();
    const upAt = Date.now();
    await waitFor(async () => (await call(`${srv.url}/api/tickets`, { headers: auth })).status === 200, {
      timeoutMs: 15_000,
      intervalMs: 50,
      what: 'requests succeed again',
    });
    const backMs = Date.now() - upAt;
    // Every pooled connection works again: several at once.
    const again = await Promise.all([1, 2, 3, 4].map(() => call(`${srv.url}/api/tickets`, { headers: auth })));
    expect(again.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(srv.child.pid).toBe(pid);
    expect(srv.child.exitCode).toBeNull();
    await waitFor(() => linesWith(srv.output(), 'database reachable again').length > 0, { timeoutMs: 5000, what: 'reachable-again line' });
    expect(linesWith(srv.output(), 'database unreachable')).toHaveLength(1);
    const back = linesWith(srv.output(), 'database reachable again');
    expect(back).toHaveLength(1);
    console.log(`real restart: 503 in ${down.tookMs} ms while down; requests succeed ${backMs} ms after PostgreSQL accepts again; downMs ${back[0].downMs}`);
  }, 90_000);
});
