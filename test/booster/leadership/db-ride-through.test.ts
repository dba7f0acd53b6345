import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { audienceOf, signClusterRequest } from '../../../common/protocol/cluster-auth.js';
import { BOOSTER_PATH, HEADER } from '../../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase } from '../../helpers/db.js';
import { TcpRelay as Relay } from '../../helpers/tcp-relay.js';
import { enqueueSteps, type FixtureServer, freePort, SECRET, startFixtureServer, until } from '../fixtures.js';

/**
 * Two boosters as real processes whose only path to PostgreSQL is a TCP relay in this test:
 * pausing the relay is a database stall as the boosters see it (connections stay open, nothing
 * answers, like SIGSTOP of the postmaster), cutting it is a restart (connections reset, new ones
 * refused). The shared test database itself keeps running, and the fixture app server reaches it
 * directly, so steps can be queued during the outage.
 */
const root = fileURLToPath(new URL('../../..', import.meta.url));

function startBoosterProcess(env: Record<string, string>, out: string[]): ChildProcess {
  const child = spawn(process.execPath, ['common/bin/omflow.mjs', 'booster'], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const s of [child.stdout!, child.stderr!]) {
    s.on('data', (d: Buffer) => {
      out.push(d.toString('utf8'));
      if (process.env.TEST_LOG_LEVEL) process.stderr.write(d);
    });
  }
  return child;
}

/** A signed read of the control plane (status, metrics need credentials). */
function signedGet(url: string, path: string, timeoutMs = 1000): Promise<Response> {
  return fetch(url + path, {
    headers: signClusterRequest(SECRET, 'ride-through-test', 'GET', path, '', Date.now(), { audience: audienceOf(url) }),
    signal: AbortSignal.timeout(timeoutMs),
  });
}

/** `/_booster/active`'s status code, with the epoch and node id from the signed status. */
async function activeStatus(url: string): Promise<{ status: number; epoch: number; nodeId: string } | null> {
  try {
    const r = await fetch(url + BOOSTER_PATH.active, { signal: AbortSignal.timeout(500) });
    await r.arrayBuffer();
    // The status view reads the database: during an outage only the role is known.
    const body = (await signedGet(url, BOOSTER_PATH.status, 500)
      .then((s) => s.json())
      .catch(() => ({ epoch: Number.NaN, nodeId: '' }))) as { epoch: number; nodeId: string };
    return { status: r.status, epoch: body.epoch, nodeId: body.nodeId };
  } catch {
    return null;
  }
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await signedGet(url, BOOSTER_PATH.metrics)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : Number.NaN;
}

describe('database outages: the active rides through (real boosters, relayed PostgreSQL)', () => {
  let tdb: TestDatabase;
  let relay: Relay;
  let fixture: FixtureServer;
  const children: ChildProcess[] = [];
  const logA: string[] = [];
  const logB: string[] = [];
  let urlA = '';
  let urlB = '';
  let epoch0 = 0;

  beforeAll(async () => {
    tdb = await createTestDatabase('postgres', { migrate: true });
    const u = new URL(tdb.url);
    relay = new Relay(u.hostname, Number(u.port || 5432));
    await relay.start();
    u.hostname = '127.0.0.1';
    u.port = String(relay.port);
    const relayed = u.toString();
    const [portA, portB] = [await freePort(), await freePort()];
    urlA = `http://127.0.0.1:${portA}`;
    urlB = `http://127.0.0.1:${portB}`;
    const common = {
      OMFLOW_DB_URL: relayed,
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_BOOSTER_HOST: '127.0.0.1',
      OMFLOW_LOG_LEVEL: 'info',
      OMFLOW_BOOSTER_SLOW_START_MS: '0',
      OMFLOW_DATA_DIR: '/tmp',
    };
    children.push(
      startBoosterProcess(
        { ...common, OMFLOW_NODE_ID: 'rt-a', OMFLOW_BOOSTER_PORT: String(portA), OMFLOW_BOOSTER_ADVERTISE_URL: urlA, OMFLOW_BOOSTER_PEER_URL: urlB },
        logA,
      ),
    );
    const first = await until(
      async () => {
        const s = await activeStatus(urlA);
        return s?.status === 200 ? s : null;
      },
      'booster A active',
      20_000,
      50,
    );
    epoch0 = first!.epoch;
    children.push(
      startBoosterProcess(
        { ...common, OMFLOW_NODE_ID: 'rt-b', OMFLOW_BOOSTER_PORT: String(portB), OMFLOW_BOOSTER_ADVERTISE_URL: urlB, OMFLOW_BOOSTER_PEER_URL: urlA },
        logB,
      ),
    );
    await until(async () => (await activeStatus(urlB))?.status === 503, 'booster B standby', 20_000, 50);
    fixture = await startFixtureServer({ id: 'rt-srv', boosters: [urlA, urlB], knex: tdb.knex, heartbeatMs: 200, stepCapacity: 20 });
    await until(async () => (await fetch(`${urlA}/warm`).catch(() => null))?.status === 200, 'A proxies', 10_000, 50);
  });

  afterAll(async () => {
    await fixture?.stop();
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        await Promise.race([new Promise((r) => c.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      }
    }
    await relay?.stop();
    await tdb?.drop();
  });

  for (const kind of ['stall', 'restart'] as const) {
    it(`a 2.5 s database ${kind}: no takeover, requests keep being proxied, steps queued meanwhile run exactly once after`, async () => {
      const outagesBefore = await metric(urlA, 'omflow_booster_db_outages_total');
      const before = await activeStatus(urlA);
      expect(before?.status).toBe(200);
      if (kind === 'stall') relay.pause();
      else relay.cut();
      const end = Date.now() + 2500;
      let proxied = 0;
      const ids: number[] = [];
      // Whatever fails below, the database comes back for the next case.
      const endOutage = () => (kind === 'stall' ? relay.resume() : relay.restore());
      onTestFinished(endOutage);
      while (Date.now() < end) {
        const r = await fetch(`${urlA}/during-outage`, { signal: AbortSignal.timeout(2000) });
        expect(r.status).toBe(200);
        expect(r.headers.get(HEADER.upstream)).toBe('rt-srv');
        await r.arrayBuffer();
        proxied++;
        expect((await activeStatus(urlB))?.status).toBe(503);
        if (ids.length === 0 && Date.now() > end - 1500) ids.push(...(await enqueueSteps(tdb.knex, 4)));
        await new Promise((r) => setTimeout(r, 50));
      }
      // Each round also waits for a status read that times out during the outage: the count
      // depends on the machine's load, so only "more than one request went through" is asserted.
      expect(proxied).toBeGreaterThanOrEqual(2);
      expect((await activeStatus(urlA))?.status).toBe(200);
      expect(await metric(urlA, 'omflow_booster_lease_held')).toBe(0);
      expect(await metric(urlA, 'omflow_booster_db_reachable')).toBe(0);
      endOutage();

      await until(
        async () => (await tdb.knex('steps').whereIn('id', ids).andWhere('state', 'done')).length === ids.length,
        'steps done after the outage',
        20_000,
        50,
      );
      await until(async () => (await metric(urlA, 'omflow_booster_lease_held')) === 1, 'A confirms its lease', 10_000, 50);
      const after = await activeStatus(urlA);
      expect(after?.status).toBe(200);
      expect(after!.epoch).toBeGreaterThanOrEqual(before!.epoch);
      expect((await activeStatus(urlB))?.status).toBe(503);
      const lease = await tdb.knex('booster_lease').where('name', 'leader').first();
      expect(lease.holder).toBe('rt-a');
      const rows = await tdb.knex('steps').whereIn('id', ids);
      for (const r of rows) {
        expect(Number(r.dispatch_count)).toBe(1);
        expect(fixture.runs.get(Number(r.id))).toBe(1);
      }
      const takeovers = await tdb.knex('booster_events').where({ kind: 'takeover' }).select('booster_id', 'epoch');
      expect(takeovers.map((t) => t.booster_id)).toEqual(['rt-a']);
      expect(Number(takeovers[0].epoch)).toBe(epoch0);
      expect(await metric(urlA, 'omflow_booster_db_outages_total')).toBe(outagesBefore + 1);
      expect(await metric(urlA, 'omflow_booster_db_reachable')).toBe(1);
      const text = logA.join('');
      const downMs = [...text.matchAll(/"downMs":(\d+)/g)].map((m) => Number(m[1]));
      console.log(`${kind}: epoch ${before!.epoch} → ${after!.epoch}, ${proxied} requests proxied during the outage, A logged downMs ${downMs.join(', ')}`);
      expect(text).toContain('database unreachable');
      expect(text).toMatch(/"downMs":\d+[^\n]*database reachable again|database reachable again[^\n]*"downMs":\d+/);
      expect(logB.join('')).toContain('database unreachable');
    });
  }
});
