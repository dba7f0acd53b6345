import { createPrivateKey, randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyPatch, buildPatch, collectDirectory, generatePatchKeyPair, loadTrustedKeys, notifyBoostersOfPatch } from '../../common/patch/index.js';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { BOOSTER_PATH, HEADER } from '../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { freePort, killProcessesRunningFrom, REPO_ROOT, type RunningProcess, startOmflow, stopAll } from '../helpers/processes.js';

/**
 * The whole product as an operator runs it: a Booster pair, three agents each starting a real
 * app server, one database. What a user would check: every acknowledged ticket exists exactly
 * once across a kill -9 of the active Booster, its automatic steps ran once, and a patch
 * applied on one node is served by every node with no failed request.
 */
const SECRET = 'whole-cluster-test-secret-0123456789';
const NODES = 3;

interface Status {
  role: string;
  epoch: number;
  pid: number;
  servers: { id: string; state: string; version: string | null }[];
}

describe('whole cluster: Booster pair, three agents, real app servers', () => {
  let t: TestDatabase;
  let work: string;
  const boosters: { url: string; proc: RunningProcess }[] = [];
  const patchKey = generatePatchKeyPair();
  let token = '';

  const status = async (url: string): Promise<Status> => {
    const r = await createClusterClient({ secret: SECRET, nodeId: 'test' }).call(url, 'GET', BOOSTER_PATH.status, undefined, { timeoutMs: 2000 });
    if (!r.ok) throw new Error(`status of ${url}: ${r.status} ${r.error ?? ''}`);
    return r.body as Status;
  };
  const activeUrl = async (): Promise<string | undefined> => {
    for (const b of boosters) {
      const ok = await fetch(`${b.url}/_booster/active`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return b.url;
    }
    return undefined;
  };

  beforeAll(async () => {
    t = await createTestDatabase('postgres', { migrate: true });
    work = mkdtempSync(join(tmpdir(), 'omflow-whole-'));
    const base = { OMFLOW_CLUSTER_SECRET: SECRET, OMFLOW_DB_URL: t.url, OMFLOW_PATCH_TRUSTED_KEYS: patchKey.trustedEntry };
    const seed = startOmflow('seed', ['server', 'seed', '--admin-user', 'admin', '--admin-password', 'Admin-pass-1', '--demo'], base);
    expect(await seed.exited, seed.output()).toBe(0);

    const ports = [await freePort(), await freePort()];
    for (const [i, port] of ports.entries()) {
      const url = `http://127.0.0.1:${port}`;
      const proc = startOmflow(`booster-${i + 1}`, ['booster'], {
        ...base,
        OMFLOW_NODE_ID: `booster-${i + 1}`,
        OMFLOW_BOOSTER_HOST: '127.0.0.1',
        OMFLOW_BOOSTER_PORT: String(port),
        OMFLOW_BOOSTER_PEER_URL: `http://127.0.0.1:${ports[1 - i]}`,
        OMFLOW_DATA_DIR: join(work, `booster-${i + 1}`),
      });
      boosters.push({ url, proc });
      // Start order of the operator guide: the first booster takes the lease before the second starts.
      if (i === 0) await waitFor(() => activeUrl(), { what: 'first booster active', timeoutMs: 30_000 });
    }
    for (let i = 1; i <= NODES; i++) {
      startOmflow(`node-${i}`, ['agent'], {
        ...base,
        OMFLOW_NODE_ID: `node-${i}`,
        OMFLOW_DATA_DIR: join(work, `node-${i}`),
        BOOSTER_IP: '127.0.0.1',
        BOOSTER_PORT: String(ports[0]),
        SECOND_BOOSTER_IP: '127.0.0.1',
        SECOND_BOOSTER_PORT: String(ports[1]),
        OMFLOW_AGENT_HOST: '127.0.0.1',
        OMFLOW_AGENT_PORT: String(await freePort()),
        OMFLOW_SERVER_HOST: '127.0.0.1',
        OMFLOW_SERVER_PORT: String(await freePort()),
        OMFLOW_AGENT_SOAK_MS: '1000',
        OMFLOW_AGENT_PATCH_POLL_MS: '1000',
        OMFLOW_AGENT_DRAIN_SETTLE_MS: '1000',
        // stopAll() gives each process 5 s: drain and server stop must fit in it.
        OMFLOW_AGENT_DRAIN_TIMEOUT_MS: '2000',
        OMFLOW_SERVER_STOP_TIMEOUT_MS: '2000',
      });
    }
    // Both boosters see every server up: the standby's table is warm.
    await waitFor(
      async () => (await Promise.all(boosters.map((b) => status(b.url)))).every((s) => s.servers.filter((x) => x.state === 'up').length === NODES),
      { what: 'three servers up on both boosters', timeoutMs: 90_000, intervalMs: 250 },
    );
    const login = await fetch(`${boosters[0].url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: 'Admin-pass-1' }),
    });
    expect(login.status).toBe(200);
    token = ((await login.json()) as { token: string }).token;
  }, 180_000);

  afterAll(async () => {
    await stopAll();
    if (work) killProcessesRunningFrom(work);
    await t?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** A client behind a VIP: on a connection error or a standby's 503 it retries the same key on the other booster. */
  async function raiseTicket(key: string, title: string): Promise<{ number: string }> {
    for (let attempt = 0; attempt < 60; attempt++) {
      const url = boosters[attempt % 2].url;
      try {
        const r = await fetch(`${url}/api/forms/it-request/tickets`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, [HEADER.idempotencyKey]: key },
          body: JSON.stringify({ data: { title, category: 'software', amount: 1000 } }),
          signal: AbortSignal.timeout(10_000),
        });
        const body = (await r.json()) as { number: string };
        if (r.status === 201 || r.status === 200) return body;
      } catch {
        /* the booster died under us: try the other one */
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`ticket ${key} was never acknowledged`);
  }

  it('kill -9 of the active booster under keyed ticket load: the standby takes over, every acknowledged ticket exists once, its steps ran once', async () => {
    const first = await activeUrl();
    const victim = boosters.find((b) => b.url === first)!;
    const survivor = boosters.find((b) => b !== victim)!;
    const epochBefore = (await status(victim.url)).epoch;

    const acknowledged = new Map<string, string>();
    let stop = false;
    let sent = 0;
    const clients = Array.from({ length: 6 }, async (_, c) => {
      while (!stop && sent < 400) {
        const key = randomUUID();
        sent++;
        const ticket = await raiseTicket(key, `failover ${c}-${key}`);
        acknowledged.set(key, ticket.number);
      }
    });
    await waitFor(() => acknowledged.size >= 30, { what: 'traffic flowing', timeoutMs: 60_000 });
    await victim.proc.kill9();
    await waitFor(async () => (await activeUrl()) === survivor.url, { what: 'standby active', timeoutMs: 10_000, intervalMs: 50 });
    const countAtTakeover = acknowledged.size;
    await waitFor(() => acknowledged.size >= countAtTakeover + 30, { what: 'traffic through the new active', timeoutMs: 60_000 });
    stop = true;
    await Promise.all(clients);

    expect((await status(survivor.url)).epoch).toBeGreaterThan(epochBefore);
    const rows = await t.knex('tickets').where('title', 'like', 'failover %').select('id', 'ticket_no', 'title');
    // Exactly once: one row per acknowledged key, with the number the client was told.
    expect(rows).toHaveLength(acknowledged.size);
    const byTitleKey = new Map(rows.map((r) => [String(r.title).split('-').slice(1).join('-'), r.ticket_no]));
    for (const [key, number] of acknowledged) expect(byTitleKey.get(key)).toBe(number);
    // Automatic steps (condition, compute) were dispatched across the failover and applied once.
    await waitFor(
      async () => Number((await t.knex('tickets').where('title', 'like', 'failover %').whereNot('current_step', 'approve').count({ n: '*' }))[0].n) === 0,
      { what: 'every ticket at the approval step', timeoutMs: 60_000, intervalMs: 250 },
    );
    const applied = await t
      .knex('ticket_history')
      .whereIn(
        'ticket_id',
        rows.map((r) => r.id),
      )
      .whereIn('step', ['triage', 'small'])
      .groupBy('ticket_id', 'step', 'action')
      .havingRaw('count(*) > 1')
      .select('ticket_id', 'step', 'action');
    expect(applied).toEqual([]);
    const done = await t
      .knex('ticket_history')
      .whereIn(
        'ticket_id',
        rows.map((r) => r.id),
      )
      .where('action', 'step.done')
      .count({ n: '*' });
    expect(Number(done[0].n)).toBe(2 * rows.length); // triage + small, once each

    // The dead booster comes back as the standby; the pair is whole again for what follows.
    const port = new URL(victim.url).port;
    const idx = boosters.indexOf(victim);
    victim.proc = startOmflow(`booster-${idx + 1}-again`, ['booster'], {
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_DB_URL: t.url,
      OMFLOW_NODE_ID: `booster-${idx + 1}`,
      OMFLOW_BOOSTER_HOST: '127.0.0.1',
      OMFLOW_BOOSTER_PORT: port,
      OMFLOW_BOOSTER_PEER_URL: survivor.url,
      OMFLOW_DATA_DIR: join(work, `booster-${idx + 1}`),
    });
    await waitFor(async () => (await status(victim.url)).role === 'standby', { what: 'restarted booster is standby', timeoutMs: 30_000 });
  }, 240_000);

  it('a patch applied on one node reaches every node, one at a time, with no failed request through the booster', async () => {
    const active = (await activeUrl())!;
    const stats = { ok: 0, failed: [] as string[] };
    let stop = false;
    const workers = Array.from({ length: 4 }, async () => {
      while (!stop) {
        try {
          const r = await fetch(`${active}/api/forms`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
          await r.arrayBuffer();
          if (r.status === 200) stats.ok++;
          else stats.failed.push(`HTTP ${r.status}`);
        } catch (err) {
          stats.failed.push((err as Error).message);
        }
      }
    });

    const src = join(work, 'release-src');
    for (const part of ['server', 'common', 'migrations', 'package.json']) cpSync(join(REPO_ROOT, part), join(src, part), { recursive: true });
    const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8'));
    const version = `${pkg.version}-e2e`;
    writeFileSync(join(src, 'package.json'), JSON.stringify({ ...pkg, version }, null, 2));
    const bytes = buildPatch({ version, sequence: 1, privateKey: createPrivateKey(patchKey.privatePem), entries: collectDirectory(src) }).bytes;
    const stored = await applyPatch(t.db, bytes, loadTrustedKeys([patchKey.trustedEntry], { includeVendor: false }));
    await notifyBoostersOfPatch(
      boosters.map((b) => b.url),
      { secret: SECRET, nodeId: 'e2e' },
      stored.notice,
    );

    let maxDown = 0;
    await waitFor(
      async () => {
        const s = await status(active);
        maxDown = Math.max(maxDown, s.servers.filter((x) => x.state !== 'up').length);
        return s.servers.length === NODES && s.servers.every((x) => x.state === 'up' && x.version === version);
      },
      { what: `every server on ${version}`, timeoutMs: 150_000, intervalMs: 100 },
    );
    stop = true;
    await Promise.all(workers);
    expect(stats.failed).toEqual([]);
    expect(stats.ok).toBeGreaterThan(0);
    expect(maxDown).toBeLessThanOrEqual(1);
    const rollout = await t.knex('rollouts').orderBy('id', 'desc').first();
    expect(rollout.state).toBe('active');
    const nodes = await t.knex('rollout_nodes').where({ rollout_id: rollout.id }).select('state');
    expect(nodes.map((n) => n.state)).toEqual(['done', 'done', 'done']);
  }, 240_000);
});
