import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase, type Database } from '../../common/db/create-database.js';
import { migrateLatest } from '../../common/db/migrate.js';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { BOOSTER_PATH, HEADER } from '../../common/protocol/headers.js';
import { seed } from '../../server/seed.js';
import { dbConfig } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { freePort, killProcessesRunningFrom, type RunningProcess, startOmflow } from '../helpers/processes.js';

/**
 * The product as an operator runs it, for the chaos suite: a Booster pair and two agents, each
 * starting its real app server, all as child processes on one database URL (a multi-host URL
 * when the case fails the primary over). Same process starter as test/cluster/whole-cluster.test.ts.
 */
export const CHAOS_SECRET = 'chaos-cluster-secret-0123456789abc';
const ADMIN = { user: 'admin', password: 'Chaos-pass-1' };

export interface ChaosCluster {
  boosters: { id: string; url: string; proc: RunningProcess }[];
  agents: RunningProcess[];
  /** The test's own connection (same URL as the processes) for what a user would check. */
  db: Database;
  token: string;
  /** Id of the booster whose /_booster/active answers 200 ('' none, ids joined by '+' when both). */
  activeBooster(): Promise<string>;
  /** Times the boosters took a server out of rotation (their INFO line "server state changed" to down), so far. */
  serversMarkedDown(): number;
  /** Last lines of every process, for a failure message. */
  logs(chars?: number): string;
  stop(): Promise<void>;
}

export interface ChaosClusterOptions {
  name: string;
  dbUrl: string;
  /** App servers, each with its agent (default 2). */
  nodes?: number;
  /** Migrate and seed (admin, demo flow and form) first; false on a restored database. Default true. */
  prepare?: boolean;
  env?: Record<string, string>;
}

export async function startChaosCluster(opts: ChaosClusterOptions): Promise<ChaosCluster> {
  const NODES = opts.nodes ?? 2;
  const work = mkdtempSync(join(tmpdir(), `omflow-chaos-cluster-${opts.name}-`));
  const db = createDatabase(dbConfig(opts.dbUrl));
  const procs: RunningProcess[] = [];
  const boosters: ChaosCluster['boosters'] = [];
  const agents: RunningProcess[] = [];
  const stop = async () => {
    // Agents (and their servers) first, so no server is left heartbeating to a stopped booster.
    // The grace covers the agent's drain + server stop + SIGKILL chain (timings set below).
    await Promise.all(agents.map((p) => p.stop(20_000)));
    await Promise.all(boosters.map((b) => b.proc.stop(10_000)));
    // An app server runs in its own process group (the agent's): if an agent died before stopping
    // it, it must not outlive the test. Its command line names its release below `work`.
    const left = killProcessesRunningFrom(work);
    if (left.length) console.warn(`chaos: ${left.length} app server(s) outlived their stopped agent; SIGKILL to ${left.join(', ')}`);
    await db.destroy();
    rmSync(work, { recursive: true, force: true });
  };
  const activeBooster = async () => {
    const answers = await Promise.all(
      boosters.map((b) =>
        fetch(b.url + BOOSTER_PATH.active, { signal: AbortSignal.timeout(1000) }).then(
          async (r) => {
            await r.arrayBuffer();
            return r.status === 200 ? b.id : '';
          },
          () => '',
        ),
      ),
    );
    return answers.filter(Boolean).join('+');
  };
  try {
    if (opts.prepare !== false) {
      await migrateLatest(db.knex);
      await seed(db, { adminUser: ADMIN.user, adminPassword: ADMIN.password, demo: true });
    }
    const base = { OMFLOW_CLUSTER_SECRET: CHAOS_SECRET, OMFLOW_DB_URL: opts.dbUrl, ...opts.env };
    const ports = [await freePort(), await freePort()];
    for (const [i, port] of ports.entries()) {
      const id = `${opts.name}-booster-${i + 1}`;
      const url = `http://127.0.0.1:${port}`;
      const proc = startOmflow(id, ['booster'], {
        ...base,
        OMFLOW_NODE_ID: id,
        OMFLOW_BOOSTER_HOST: '127.0.0.1',
        OMFLOW_BOOSTER_PORT: String(port),
        OMFLOW_BOOSTER_PEER_URL: `http://127.0.0.1:${ports[1 - i]}`,
        OMFLOW_DATA_DIR: join(work, id),
        // Deep checks (/readyz) every 250 ms instead of 5 s: whether a server stays in rotation
        // through an outage is then seen on every run, not on one in six.
        OMFLOW_BOOSTER_READY_INTERVAL_MS: '250',
        // INFO: the boosters' "server state changed" lines are what serversMarkedDown() counts.
        OMFLOW_LOG_LEVEL: 'info',
      });
      procs.push(proc);
      boosters.push({ id, url, proc });
      // The operator guide's start order: the first booster holds the lease before the second starts.
      if (i === 0) await waitFor(async () => (await activeBooster()) === id, { what: `${id} active`, timeoutMs: 30_000 });
    }
    for (let i = 1; i <= NODES; i++) {
      const id = `${opts.name}-node-${i}`;
      const proc = startOmflow(id, ['agent'], {
        ...base,
        // A quick stop at the end of the test: short drain and server stop windows.
        OMFLOW_AGENT_DRAIN_SETTLE_MS: '200',
        OMFLOW_AGENT_DRAIN_TIMEOUT_MS: '2000',
        OMFLOW_AGENT_STOP_TIMEOUT_MS: '5000',
        OMFLOW_SERVER_STOP_TIMEOUT_MS: '2000',
        OMFLOW_NODE_ID: id,
        OMFLOW_DATA_DIR: join(work, id),
        BOOSTER_IP: '127.0.0.1',
        BOOSTER_PORT: String(ports[0]),
        SECOND_BOOSTER_IP: '127.0.0.1',
        SECOND_BOOSTER_PORT: String(ports[1]),
        OMFLOW_AGENT_HOST: '127.0.0.1',
        OMFLOW_AGENT_PORT: String(await freePort()),
        OMFLOW_SERVER_HOST: '127.0.0.1',
        OMFLOW_SERVER_PORT: String(await freePort()),
      });
      procs.push(proc);
      agents.push(proc);
    }
    const client = createClusterClient({ secret: CHAOS_SECRET, nodeId: 'chaos-test' });
    await waitFor(
      async () => {
        const views = await Promise.all(boosters.map((b) => client.call(b.url, 'GET', BOOSTER_PATH.status, undefined, { timeoutMs: 2000 })));
        return views.every((v) => v.ok && (v.body as { servers: { state: string }[] }).servers.filter((s) => s.state === 'up').length === NODES);
      },
      { what: `${NODES} servers up on both boosters`, timeoutMs: 90_000, intervalMs: 250 },
    );
    const login = await fetch(`${boosters[0]!.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: ADMIN.user, password: ADMIN.password }),
    });
    if (login.status !== 200) throw new Error(`login through the booster: HTTP ${login.status}`);
    const token = ((await login.json()) as { token: string }).token;
    // A just-started server can still fail its first deep checks (a cold /readyz): the cluster is
    // ready for the test once reads through the active booster succeed several times in a row.
    let inARow = 0;
    await waitFor(
      async () => {
        const r = await fetch(`${boosters[0]!.url}/api/forms`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
        await r.arrayBuffer();
        inARow = r.status === 200 ? inARow + 1 : 0;
        return inARow >= 10;
      },
      { what: 'reads through the booster succeeding', timeoutMs: 60_000, intervalMs: 200 },
    );
    return {
      boosters,
      agents,
      db,
      token,
      activeBooster,
      serversMarkedDown: () => boosters.reduce((n, b) => n + (b.proc.output().match(/"from":"up","to":"down"/g)?.length ?? 0), 0),
      logs: (chars = 3000) => procs.map((p) => `--- ${p.name}\n${p.output().slice(-chars)}`).join('\n'),
      stop,
    };
  } catch (err) {
    const logs = procs.map((p) => `--- ${p.name}\n${p.output().slice(-3000)}`).join('\n');
    await stop().catch(() => {});
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
}

export interface Ack {
  key: string;
  number: string;
  startedAt: number;
  /** When the acknowledgement arrived (ms epoch). */
  at: number;
}

export interface TicketLoad {
  acks: Ack[];
  /** Tickets that failed on the first try and on the one retry. */
  errors: { key: string; at: number; why: string }[];
  /** First attempts that failed (the retry may have saved them). */
  firstFailures: number;
  /** Why first attempts failed, counted by answer (e.g. `HTTP 503 BOOSTER_ERR_NO_SERVER`). */
  firstFailureKinds: Record<string, number>;
  stop(): Promise<void>;
}

/** Title of a load ticket: carries its idempotency key, so a row is found by the key alone. */
export const ticketTitle = (key: string) => `chaos ${key}`;

/**
 * Steady keyed ticket load, as users behind a VIP raise tickets: every ticket is a POST with its
 * own `Idempotency-Key`; a failed attempt (network error, timeout, non-2xx) is retried once with
 * the same key after the answer's Retry-After (at most 1 s) or 200 ms. Each client then pauses
 * `pauseMs`, so the load is steady rather than saturating.
 */
export function startTicketLoad(opts: { url: string; token: string; label: string; clients?: number; pauseMs?: number }): TicketLoad {
  const load: Omit<TicketLoad, 'stop'> = { acks: [], errors: [], firstFailures: 0, firstFailureKinds: {} };
  let stopped = false;
  const attempt = async (key: string): Promise<{ ok: true; number: string } | { ok: false; why: string; retryAfterMs: number }> => {
    try {
      const r = await fetch(`${opts.url}/api/forms/it-request/tickets`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.token}`, [HEADER.idempotencyKey]: key },
        body: JSON.stringify({ data: { title: ticketTitle(key), category: 'software', amount: 1000 } }),
        signal: AbortSignal.timeout(10_000),
      });
      const text = await r.text();
      if (r.status === 200 || r.status === 201) return { ok: true, number: (JSON.parse(text) as { number: string }).number };
      const retryAfter = Number(r.headers.get('retry-after'));
      const code = /"code":"([A-Z_]+)"/.exec(text)?.[1] ?? text.slice(0, 60);
      return { ok: false, why: `HTTP ${r.status} ${code}`, retryAfterMs: Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : 200 };
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      return { ok: false, why: e.cause?.code ?? e.name, retryAfterMs: 200 };
    }
  };
  const client = async () => {
    while (!stopped) {
      const key = `${opts.label}-${randomUUID()}`;
      const startedAt = Date.now();
      let r = await attempt(key);
      if (!r.ok) {
        load.firstFailures++;
        load.firstFailureKinds[r.why] = (load.firstFailureKinds[r.why] ?? 0) + 1;
        await new Promise((res) => setTimeout(res, Math.min(r.ok ? 0 : r.retryAfterMs, 1000)));
        r = await attempt(key);
      }
      if (r.ok) load.acks.push({ key, number: r.number, startedAt, at: Date.now() });
      else load.errors.push({ key, at: Date.now(), why: r.why });
      await new Promise((res) => setTimeout(res, opts.pauseMs ?? 50));
    }
  };
  const clients = Array.from({ length: opts.clients ?? 3 }, client);
  return Object.assign(load, {
    async stop() {
      stopped = true;
      await Promise.all(clients);
    },
  });
}
