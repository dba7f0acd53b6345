import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../../booster/booster.js';
import { createClusterClient } from '../../../common/protocol/cluster-client.js';
import { BOOSTER_PATH, HEADER } from '../../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../../helpers/db.js';
import { boosterConfig, enqueueSteps, type FixtureServer, freePort, SECRET, silentLog, startBlackHole, startFixtureServer, until } from '../fixtures.js';

/** Two boosters as real processes on one database: kill -9 of the active, partition from the peer. */
const root = fileURLToPath(new URL('../../..', import.meta.url));

function startBoosterProcess(env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ['common/bin/omflow.mjs', 'booster'], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr!.on('data', (d) => {
    if (process.env.TEST_LOG_LEVEL) process.stderr.write(d);
  });
  return child;
}

const statusClient = createClusterClient({ secret: SECRET, nodeId: 'test' });

async function activeStatus(url: string): Promise<{ status: number; epoch: number } | null> {
  try {
    const r = await fetch(url + BOOSTER_PATH.active, { signal: AbortSignal.timeout(500) });
    await r.arrayBuffer();
    // /_booster/active says only yes or no; the epoch is in the (signed) status.
    const st = await statusClient.call(url, 'GET', BOOSTER_PATH.status, undefined, { timeoutMs: 500 });
    if (!st.ok) return null;
    return { status: r.status, epoch: (st.body as { epoch: number }).epoch };
  } catch {
    return null;
  }
}

for (const vendor of vendorsUnderTest()) {
  describe(`active/standby on ${vendor}`, () => {
    let tdb: TestDatabase;
    const children: ChildProcess[] = [];
    const cleanups: (() => Promise<unknown>)[] = [];
    let urlA = '';
    let urlB = '';
    let fixture: FixtureServer;

    beforeAll(async () => {
      tdb = await createTestDatabase(vendor, { migrate: true });
    });
    afterAll(async () => {
      for (const c of cleanups.reverse()) await c().catch(() => {});
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill('SIGTERM');
          await Promise.race([new Promise((r) => c.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
          if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        }
      }
      await tdb?.drop();
    });

    it('kill -9 of the active: the standby is active within 2 s with a higher epoch and in-flight steps are re-dispatched exactly once', async () => {
      const [portA, portB] = [await freePort(), await freePort()];
      urlA = `http://127.0.0.1:${portA}`;
      urlB = `http://127.0.0.1:${portB}`;
      const common = {
        OMFLOW_DB_URL: tdb.url,
        OMFLOW_CLUSTER_SECRET: SECRET,
        OMFLOW_BOOSTER_HOST: '127.0.0.1',
        OMFLOW_LOG_LEVEL: 'warn',
        OMFLOW_BOOSTER_STEP_LEASE_MS: '1500',
        OMFLOW_BOOSTER_SLOW_START_MS: '0',
        OMFLOW_DATA_DIR: '/tmp',
      };
      const a = startBoosterProcess({
        ...common,
        OMFLOW_NODE_ID: 'ha-a',
        OMFLOW_BOOSTER_PORT: String(portA),
        OMFLOW_BOOSTER_ADVERTISE_URL: urlA,
        OMFLOW_BOOSTER_PEER_URL: urlB,
      });
      children.push(a);
      const first = await until(
        async () => {
          const s = await activeStatus(urlA);
          return s?.status === 200 ? s : null;
        },
        'booster A active',
        20_000,
        50,
      );
      const b = startBoosterProcess({
        ...common,
        OMFLOW_NODE_ID: 'ha-b',
        OMFLOW_BOOSTER_PORT: String(portB),
        OMFLOW_BOOSTER_ADVERTISE_URL: urlB,
        OMFLOW_BOOSTER_PEER_URL: urlA,
      });
      children.push(b);
      await until(async () => (await activeStatus(urlB))?.status === 503, 'booster B standby', 20_000, 50);
      const epochA = first!.epoch;

      fixture = await startFixtureServer({ id: 'srv-1', boosters: [urlA, urlB], knex: tdb.knex, heartbeatMs: 200, stepCapacity: 50 });
      cleanups.push(() => fixture.stop());
      // The first dispatches get lost (the server "never got them"): their leases must lapse and be handed out again.
      fixture.stepMode = 'drop';
      const ids = await enqueueSteps(tdb.knex, 5);
      await until(() => fixture.dispatches.length >= 5, 'steps dispatched by A', 10_000);
      expect(fixture.dispatches.every((d) => d.epoch === epochA)).toBe(true);

      const killedAt = Date.now();
      a.kill('SIGKILL');
      fixture.stepMode = 'run';
      const second = await until(
        async () => {
          const s = await activeStatus(urlB);
          return s?.status === 200 ? s : null;
        },
        'standby takes over',
        5000,
        10,
      );
      const takeoverMs = Date.now() - killedAt;
      expect(takeoverMs).toBeLessThanOrEqual(2000);
      expect(second!.epoch).toBeGreaterThan(epochA);

      await until(async () => (await tdb.knex('steps').whereIn('id', ids).andWhere('state', 'done')).length === ids.length, 'steps done', 15_000, 50);
      const rows = await tdb.knex('steps').whereIn('id', ids).orderBy('id');
      for (const r of rows) {
        expect(Number(r.dispatch_count)).toBe(2);
        // Re-dispatched by the new active: its takeover epoch, or a later one of its own when a
        // starved renewal lapsed and it re-took the lease (ADR 0008) — never A's.
        expect(Number(r.epoch)).toBeGreaterThanOrEqual(second!.epoch);
        expect(fixture.runs.get(Number(r.id))).toBe(1);
      }
      const events = await tdb.knex('booster_events').select('kind', 'booster_id', 'subject');
      expect(events.filter((e) => e.kind === 'takeover' && e.booster_id === 'ha-b')).toHaveLength(1);
      expect(
        events
          .filter((e) => e.kind === 'step-reassigned')
          .map((e) => Number(e.subject))
          .sort((x, y) => x - y),
      ).toEqual(ids);

      // The survivor proxies.
      const r = await fetch(`${urlB}/anything`);
      expect(r.status).toBe(200);
      expect(r.headers.get(HEADER.upstream)).toBe('srv-1');
    });

    it('a booster partitioned from its peer but not from the database never acts as a second active', async () => {
      expect((await activeStatus(urlB))?.status).toBe(200);
      const hole = await startBlackHole();
      cleanups.push(() => hole.stop());
      const c: Booster = createBooster({
        config: boosterConfig('ha-c', {
          OMFLOW_BOOSTER_PEER_URL: hole.url,
          OMFLOW_BOOSTER_FAST_POLL_MS: 10,
          OMFLOW_BOOSTER_PROBE_MS: 20,
          OMFLOW_BOOSTER_PROBE_TIMEOUT_MS: 50,
        }),
        db: tdb.db,
        log: silentLog,
      });
      const cUrl = await c.listen();
      cleanups.push(() => c.close());
      const end = Date.now() + 2500;
      let samples = 0;
      while (Date.now() < end) {
        expect(c.role()).toBe('standby');
        samples++;
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(samples).toBeGreaterThan(50);
      expect((await activeStatus(cUrl))?.status).toBe(503);
      expect((await activeStatus(urlB))?.status).toBe(200);
      const lease = await tdb.knex('booster_lease').where('name', 'leader').first();
      expect(lease.holder).toBe('ha-b');
      const res = await fetch(`${cUrl}/x`);
      expect(res.status).toBe(503);
      expect(res.headers.get(HEADER.active)).toBe(urlB);
    });

    it('SIGTERM stops the active process cleanly: it exits 0 and records the release', async () => {
      const b = children[1];
      expect((await activeStatus(urlB))?.status).toBe(200);
      const exited = new Promise<number | null>((r) => b.once('exit', (code) => r(code)));
      b.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), 10_000))]);
      expect(code).toBe(0);
      const node = await tdb.knex('booster_nodes').where('id', 'ha-b').first();
      expect(node.role).toBe('stopped');
      const released = await tdb.knex('booster_events').where({ kind: 'release', booster_id: 'ha-b' });
      expect(released).toHaveLength(1);
    });
  });
}
