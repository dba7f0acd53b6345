import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../../helpers/db.js';
import { waitFor } from '../../helpers/poll.js';
import { type RunningProcess, runOmflow, startOmflow } from '../../helpers/processes.js';
import { startRoutedLoad } from '../../helpers/routed-load.js';
import { enqueueSteps, type FixtureServer, freePort, SECRET, startFixtureServer } from '../fixtures.js';

/**
 * `omflow switchover` on two boosters running as real processes (with their default data-plane
 * workers) in front of two loopback servers, under load from clients routed by `/_booster/active`
 * the way a load balancer's health check routes them, never retrying: every request answers 2xx,
 * the standby holds the lease at the next epoch, queued steps run exactly once, and the
 * command, the takeover and the step-down are in the event log. Then back again, through the
 * standby (the command follows it to the active).
 */
const OPS_TOKEN = 'ops-write-token-0123456789abcdefghij';

interface ActiveAnswer {
  status: number;
}

async function activeOf(url: string): Promise<ActiveAnswer | null> {
  try {
    const r = await fetch(url + BOOSTER_PATH.active, { signal: AbortSignal.timeout(1000) });
    await r.arrayBuffer();
    return { status: r.status };
  } catch {
    return null;
  }
}

for (const vendor of vendorsUnderTest()) {
  describe(`switchover under load on ${vendor}`, () => {
    let tdb: TestDatabase;
    const procs: RunningProcess[] = [];
    const servers: FixtureServer[] = [];

    beforeAll(async () => {
      tdb = await createTestDatabase(vendor, { migrate: true });
    });
    afterAll(async () => {
      for (const s of servers) await s.stop().catch(() => {});
      for (const p of procs) await p.stop(5000);
      await tdb?.drop();
    });

    it('hands the active role to the standby and back with no failed request, steps once each, all of it logged', async () => {
      const [portA, portB] = [await freePort(), await freePort()];
      const urlA = `http://127.0.0.1:${portA}`;
      const urlB = `http://127.0.0.1:${portB}`;
      const common = {
        OMFLOW_DB_URL: tdb.url,
        OMFLOW_CLUSTER_SECRET: SECRET,
        OMFLOW_BOOSTER_HOST: '127.0.0.1',
        OMFLOW_BOOSTER_SLOW_START_MS: '0',
        OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS: `ops:${OPS_TOKEN}`,
        OMFLOW_LOG_LEVEL: 'warn',
        // The loopback servers share this (loaded) test process with the clients: health checks are
        // not what this test is about, so a slow answer must not take a server out (as in boosterConfig).
        OMFLOW_BOOSTER_HEALTH_TIMEOUT_MS: '2000',
        OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: '5000',
      };
      const start = (id: string, port: number, self: string, peer: string) =>
        startOmflow(`booster ${id}`, ['booster'], {
          ...common,
          OMFLOW_NODE_ID: id,
          OMFLOW_BOOSTER_PORT: String(port),
          OMFLOW_BOOSTER_ADVERTISE_URL: self,
          OMFLOW_BOOSTER_PEER_URL: peer,
        });
      procs.push(start('sw-a', portA, urlA, urlB));
      await waitFor(async () => (await activeOf(urlA))?.status === 200, { what: 'booster A active', timeoutMs: 30_000, intervalMs: 50 });
      procs.push(start('sw-b', portB, urlB, urlA));
      await waitFor(async () => (await activeOf(urlB))?.status === 503, { what: 'booster B standby', timeoutMs: 30_000, intervalMs: 50 });
      for (const id of ['srv-1', 'srv-2'])
        servers.push(await startFixtureServer({ id, boosters: [urlA, urlB], knex: tdb.knex, heartbeatMs: 100, stepCapacity: 20 }));
      await waitFor(async () => (await fetch(`${urlA}/warm`)).status === 200, { what: 'A proxies', timeoutMs: 10_000, intervalMs: 50 });

      let keys = 0;
      const load = startRoutedLoad({
        boosters: [urlA, urlB],
        clients: 8,
        next: (c, i) =>
          i % 2 === 0
            ? { method: 'GET', path: `/get/${c}/${i}` }
            : {
                method: 'POST',
                path: '/tickets',
                headers: { 'content-type': 'application/json', 'idempotency-key': `k-${c}-${i}-${keys++}` },
                body: '{"a":1}',
              },
      });
      const env = { OMFLOW_OPERATOR_TOKEN: OPS_TOKEN };
      try {
        await waitFor(() => load.answered.get(urlA)! > 200, { what: 'load flowing through A', timeoutMs: 20_000, intervalMs: 20 });
        const epochA = Number((await tdb.knex('booster_lease').where('name', 'leader').first()).epoch);
        const ids = await enqueueSteps(tdb.knex, 10);

        const there = await runOmflow(['switchover', '--to', 'sw-b', '--booster', urlA, '--json'], env);
        expect(there.stderr).toBe('');
        expect(there.code).toBe(0);
        const first = JSON.parse(there.stdout);
        expect(first).toMatchObject({ from: 'sw-a', to: 'sw-b', previousEpoch: epochA, epoch: epochA + 1, confirmed: true });
        expect((await activeOf(urlB))?.status).toBe(200);
        expect((await activeOf(urlA))?.status).toBe(503);
        await waitFor(() => load.target() === urlB, { what: 'clients moved to B', timeoutMs: 10_000, intervalMs: 20 });
        const onB = load.answered.get(urlB) ?? 0;
        await waitFor(() => (load.answered.get(urlB) ?? 0) > onB + 200, { what: 'load flowing through B', timeoutMs: 20_000, intervalMs: 20 });
        await waitFor(async () => (await tdb.knex('steps').whereIn('id', ids).andWhere('state', 'done')).length === ids.length, {
          what: 'steps done',
          timeoutMs: 20_000,
          intervalMs: 50,
        });

        // Back again, sent to the standby (A): the command follows it to the active.
        const back = await runOmflow(['switchover', '--booster', urlA], env);
        expect(back.code).toBe(0);
        expect(back.stdout).toContain(`sw-b → sw-a, epoch ${epochA + 1} → ${epochA + 2}`);
        await waitFor(() => load.target() === urlA, { what: 'clients moved back to A', timeoutMs: 10_000, intervalMs: 20 });
        const onA = load.answered.get(urlA)!;
        await waitFor(() => load.answered.get(urlA)! > onA + 200, { what: 'load flowing through A again', timeoutMs: 20_000, intervalMs: 20 });
        console.log(
          `switchover under load (${vendor}): handed over in ${first.handoverMs} ms and ${/in (\d+) ms/.exec(back.stdout)?.[1]} ms; ${load.sent()} requests, ${load.failures.length} failed`,
        );
      } finally {
        await load.stop();
      }
      expect(load.failures).toEqual([]);
      expect(load.answered.get(urlA)).toBeGreaterThan(0);
      expect(load.answered.get(urlB)).toBeGreaterThan(0);

      const lease = await tdb.knex('booster_lease').where('name', 'leader').first();
      expect(lease.holder).toBe('sw-a');
      const rows = await tdb.knex('steps').whereIn('state', ['done']).select('id', 'dispatch_count');
      expect(rows).toHaveLength(10);
      for (const s of servers) for (const n of s.runs.values()) expect(n).toBe(1);
      const events = await tdb.knex('booster_events').whereIn('kind', ['switchover', 'takeover', 'step-down']).orderBy('id');
      const parsed = events.map((e) => ({ kind: e.kind, by: e.booster_id, details: typeof e.details === 'string' ? JSON.parse(e.details) : e.details }));
      expect(parsed.filter((e) => e.kind === 'switchover').map((e) => [e.by, e.details.to, e.details.by])).toEqual([
        ['sw-a', 'sw-b', 'operator:ops'],
        ['sw-b', 'sw-a', 'operator:ops'],
      ]);
      expect(parsed.filter((e) => e.kind === 'step-down').map((e) => [e.by, e.details.reason])).toEqual([
        ['sw-a', 'switchover'],
        ['sw-b', 'switchover'],
      ]);
      expect(parsed.filter((e) => e.kind === 'takeover').map((e) => e.by)).toEqual(['sw-a', 'sw-b', 'sw-a']);
    });

    it('is refused with a clear code without a write token, and for a standby that is not the one named', async () => {
      const urlA = procs[0] ? `http://127.0.0.1:${(await tdb.knex('booster_nodes').where('id', 'sw-a').first()).url.split(':').pop()}` : '';
      const ro = await runOmflow(['switchover', '--booster', urlA], {});
      expect(ro.code).toBe(1);
      expect(ro.stderr).toContain('wants credentials');
      const wrong = await runOmflow(['switchover', '--to', 'sw-z', '--booster', urlA], { OMFLOW_OPERATOR_TOKEN: OPS_TOKEN });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain('BOOSTER_ERR_SWITCHOVER_NO_CANDIDATE');
      expect((await tdb.knex('booster_lease').where('name', 'leader').first()).holder).toBe('sw-a');
    });
  });
}
