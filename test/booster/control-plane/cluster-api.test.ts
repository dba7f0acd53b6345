import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createBooster } from '../../../booster/booster.js';
import { run as statusRun } from '../../../booster/cli/status.js';
import { STEPS_READY_PATH } from '../../../booster/control-plane/control-api.js';
import type { LicenseGate } from '../../../booster/license/gate.js';
import { verifyClusterRequest } from '../../../common/protocol/cluster-auth.js';
import { AGENT_PATH, BOOSTER_PATH } from '../../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../../helpers/db.js';
import { boosterConfig, enqueueSteps, type FixtureServer, SECRET, signedPost, silentLog, startFixtureServer, until } from '../fixtures.js';

/** Step dispatch, graceful hand-over, agent reports, patch notices and `omflow status`. */
let tdb: TestDatabase;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  tdb = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  await tdb.knex('steps').del();
  await tdb.knex('servers').del();
});
afterAll(async () => {
  await tdb?.drop();
});

async function startBooster(id: string, overrides: Record<string, string | number | boolean> = {}, gate?: LicenseGate) {
  const b = createBooster({ config: boosterConfig(id, overrides), db: tdb.db, log: silentLog, licenseGate: gate });
  const base = await b.listen();
  let closed = false;
  cleanups.push(async () => {
    if (!closed) await b.close();
  });
  return Object.assign(b, {
    base,
    async stop() {
      closed = true;
      await b.close();
    },
  });
}

async function fixtures(boosters: string[], ids: string[], stepCapacity = 4): Promise<FixtureServer[]> {
  const out: FixtureServer[] = [];
  for (const id of ids) {
    const f = await startFixtureServer({ id, boosters, knex: tdb.knex, stepCapacity });
    cleanups.push(() => f.stop());
    out.push(f);
  }
  for (const f of out) await f.heartbeatNow();
  return out;
}

describe('step dispatch and cluster API', () => {
  it('dispatches ready steps to servers with capacity, fenced by the epoch, and each runs once', async () => {
    const b = await startBooster('api-steps');
    await until(() => b.role() === 'active', 'active');
    const [s1, s2] = await fixtures([b.base], ['w1', 'w2'], 3);
    s2.stepCapacity = 0; // w2 has no step capacity: everything goes to w1
    await s2.heartbeatNow();
    await until(() => b.table.routable.length === 2, 'servers up');
    const ids = await enqueueSteps(tdb.knex, 12);
    await until(async () => (await tdb.knex('steps').where('state', 'done')).length === 12, 'all steps done', 10_000);
    expect(s2.dispatches).toEqual([]);
    expect(s1.dispatches.map((d) => d.stepId).sort((x, y) => x - y)).toEqual(ids);
    expect(s1.dispatches.every((d) => d.epoch === b.epoch())).toBe(true);
    for (const id of ids) expect(s1.runs.get(id)).toBe(1);
    const rows = await tdb.knex('steps').whereIn('id', ids);
    expect(rows.every((r) => Number(r.dispatch_count) === 1 && r.assigned_server === 'w1')).toBe(true);
  });

  it('accepts a signed steps-ready hint (and refuses a forged one); the hinted step runs once', async () => {
    const b = await startBooster('api-hint');
    await until(() => b.role() === 'active', 'active');
    const [s] = await fixtures([b.base], ['h1']);
    await until(() => b.table.routable.length === 1, 'server up');
    const forged = await signedPost(b.base, STEPS_READY_PATH, '', 'not-the-cluster-secret-0123456789');
    expect(forged.status).toBe(401);
    expect(((await forged.json()) as { code: string }).code).toBe('COMMON_ERR_CLUSTER_AUTH');
    const [id] = await enqueueSteps(tdb.knex, 1);
    const r = await signedPost(b.base, STEPS_READY_PATH, '');
    expect(r.status).toBe(204);
    await until(async () => (await tdb.knex('steps').where({ id, state: 'done' })).length === 1, 'hinted step done');
    expect(s.dispatches.map((d) => d.stepId)).toEqual([id]);
    expect(s.runs.get(id)).toBe(1);
  });

  it('pauses step dispatch while the license gate is closed', async () => {
    let allow = false;
    const gate: LicenseGate = {
      async start() {},
      async refresh() {
        allow = true;
      },
      async close() {},
      status: (used) => ({ state: 'expired', daysLeft: 0, clusterId: null, servers: { licensed: null, used }, warnings: [] }),
      allowsDistribution: () => allow,
      maxServers: () => null,
    };
    const b = await startBooster('api-gate', {}, gate);
    await until(() => b.role() === 'active', 'active');
    const [s] = await fixtures([b.base], ['g1']);
    await until(() => b.table.routable.length === 1, 'server up');
    const ids = await enqueueSteps(tdb.knex, 2);
    await new Promise((r) => setTimeout(r, 300));
    expect(s.dispatches).toEqual([]);
    await signedPost(b.base, BOOSTER_PATH.licenseChanged, {});
    await until(async () => (await tdb.knex('steps').whereIn('id', ids).andWhere('state', 'done')).length === 2, 'steps done after the gate opened');
  });

  it('a graceful stop of the active hands the lease over at once', async () => {
    const a = await startBooster('api-a', { OMFLOW_BOOSTER_LEASE_MS: 60_000, OMFLOW_BOOSTER_RENEW_DEADLINE_MS: 30_000, OMFLOW_BOOSTER_RENEW_MS: 200 });
    await until(() => a.role() === 'active', 'a active');
    const s = await startBooster('api-s', {
      OMFLOW_BOOSTER_LEASE_MS: 60_000,
      OMFLOW_BOOSTER_RENEW_DEADLINE_MS: 30_000,
      OMFLOW_BOOSTER_RENEW_MS: 200,
      OMFLOW_BOOSTER_PEER_URL: '',
    });
    const epochA = a.epoch();
    await a.stop();
    // With a 60 s lease, only the release on stop lets the standby in this quickly.
    await until(() => s.role() === 'active', 'standby took over', 3000);
    expect(s.epoch()).toBeGreaterThan(epochA);
  });

  it('stores agent reports, fans patch notices out to agents, and `omflow status` prints the cluster', async () => {
    const b = await startBooster('api-status');
    await until(() => b.role() === 'active', 'active');
    const got: { path: string; ok: boolean; body: string }[] = [];
    const agent = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        got.push({
          path: req.url!,
          ok: verifyClusterRequest(SECRET, { method: 'POST', path: req.url!, headers: req.headers, body }).ok,
          body: body.toString(),
        });
        res.writeHead(200).end('{}');
      });
    });
    await new Promise<void>((r) => agent.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise((r) => agent.close(r)));
    const agentUrl = `http://127.0.0.1:${(agent.address() as AddressInfo).port}`;
    await fixtures([b.base], ['st-1']);
    const rep = await signedPost(b.base, BOOSTER_PATH.agentReport, { nodeId: 'st-1', agentUrl, state: 'running', version: '1.0.0' });
    expect(rep.status).toBe(200);
    expect((await tdb.knex('servers').where('id', 'st-1').first()).agent_state).toBe('running');
    const bad = await signedPost(b.base, BOOSTER_PATH.agentReport, { nodeId: 'st-1', agentUrl, state: 'bogus' });
    expect(bad.status).toBe(400);
    const notice = await signedPost(b.base, BOOSTER_PATH.patchNotice, { patchId: 7, version: '1.2.3', sequence: 3 });
    expect(await notice.json()).toEqual({ notified: 1, failed: [] });
    expect(got).toEqual([{ path: AGENT_PATH.patchNotice, ok: true, body: JSON.stringify({ patchId: 7, version: '1.2.3', sequence: 3 }) }]);

    const out = new PassThrough();
    let text = '';
    out.on('data', (d) => (text += d));
    // Without credentials the booster says nothing about the cluster.
    const anon = new PassThrough();
    let anonText = '';
    anon.on('data', (d) => (anonText += d));
    expect(await statusRun(['--booster', b.base], { env: {}, stdout: anon, stderr: anon, stopSignal: new Promise(() => {}) })).toBe(1);
    expect(anonText).toContain('wants credentials');
    const code = await statusRun(['--booster', b.base], {
      env: { OMFLOW_CLUSTER_SECRET: SECRET },
      stdout: out,
      stderr: out,
      stopSignal: new Promise(() => {}),
    });
    expect(code).toBe(0);
    expect(text).toContain('is ACTIVE');
    expect(text).toMatch(/st-1\s+http:\/\/127\.0\.0\.1:\d+\s+up\s+running\s+1\.0\.0/);
    expect(text).toContain('api-status');
    expect(text).toContain('takeover');
    expect(text).toContain('LICENSE');
  });
});
