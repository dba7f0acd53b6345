import { execFileSync } from 'node:child_process';
import cluster from 'node:cluster';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Agent, fetch } from 'undici';
import { type Booster, createBooster } from '../../booster/booster.js';
import { boosterArea, clusterArea } from '../../common/config/areas/index.js';
import { loadConfig } from '../../common/config/load.js';
import { createLogger } from '../../common/log.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { buildServer } from '../../server/app.js';
import { createHeartbeat } from '../../server/heartbeat.js';
import { seed } from '../../server/seed.js';
import type { TestDatabase } from '../helpers/db.js';
import { SECRET, serverConfig } from '../server/helpers.js';

/**
 * The default configuration, as a new user runs it: one booster with the data-plane workers as
 * shipped (OMFLOW_BOOSTER_WORKERS left at its default, one per core) and TLS on (a throwaway
 * certificate), in front of two real app servers (the server's own routes and heartbeats) on
 * one database. The booster's log is kept in memory, so a test can look for worker exits there.
 */
export const ADMIN = { user: 'admin', password: 'real-clients-pass-1' };
export const OPERATOR_TOKEN = 'real-clients-operator-token-0123456789';

export interface DefaultCluster {
  booster: Booster;
  /** https://localhost:<port> (what users, browsers and tools reach). */
  url: string;
  port: number;
  /** The certificate (PEM) and key files, for tools that want them. */
  certFile: string;
  servers: FastifyInstance[];
  /** Booster log lines (JSON) so far, the workers' included. */
  logLines(): string[];
  /** Live data-plane worker pids. */
  workerPids(): number[];
  /** omflow_booster_worker_exits_total from /_booster/metrics (operator token over TLS). */
  workerExits(): Promise<number>;
  /** The metric lines whose names contain one of `names` (for the figures). */
  metrics(names: string[]): Promise<string[]>;
  /** A session cookie of the admin (signed in through the booster). */
  adminCookie(): Promise<string>;
  close(): Promise<void>;
}

/** An undici dispatcher that accepts the throwaway certificate; HTTP/2 when allowH2. */
export function insecureAgent(allowH2: boolean, connections = 8): Agent {
  return new Agent({ connect: { rejectUnauthorized: false }, allowH2, connections });
}

export async function startDefaultCluster(t: TestDatabase): Promise<DefaultCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'omflow-real-clients-'));
  const certFile = join(dir, 'booster.crt');
  const keyFile = join(dir, 'booster.key');
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'],
      ...['-keyout', keyFile, '-out', certFile, '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    ],
    { stdio: 'ignore' },
  );
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  const log = createLogger({ name: 'booster', level: 'info', destination: sink });
  await seed(t.db, { adminUser: ADMIN.user, adminPassword: ADMIN.password, demo: true });

  const cfg = loadConfig([clusterArea, boosterArea], {
    env: {
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_NODE_ID: 'booster-1',
      OMFLOW_BOOSTER_HOST: '127.0.0.1',
      OMFLOW_BOOSTER_PORT: '0',
      OMFLOW_LOG_LEVEL: 'info',
      OMFLOW_BOOSTER_TLS_CERT_FILE: certFile,
      OMFLOW_BOOSTER_TLS_KEY_FILE: keyFile,
      OMFLOW_BOOSTER_OPERATOR_TOKEN: OPERATOR_TOKEN,
      // Everything else at its default: the workers as shipped, the lean path, the limits.
    },
  });
  const booster = createBooster({ config: { cluster: cfg.cluster, booster: cfg.booster }, db: t.db, log });
  const servers: FastifyInstance[] = [];
  const heartbeats: ReturnType<typeof createHeartbeat>[] = [];
  const close = async () => {
    for (const hb of heartbeats) await hb.stop();
    for (const s of servers) await s.close();
    await booster.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const listened = new URL(await booster.listen());
    const port = Number(listened.port);
    const clusterUrl = `http://127.0.0.1:${port}`;
    for (const id of ['server-1', 'server-2']) {
      const config = serverConfig(t.url, { OMFLOW_NODE_ID: id, BOOSTER_IP: '127.0.0.1', BOOSTER_PORT: String(port) });
      const app = await buildServer({ config, db: t.db, log: createLogger({ name: id, level: 'silent' }) });
      await app.listen({ host: '127.0.0.1', port: 0 });
      servers.push(app);
      const hb = createHeartbeat({
        boosterUrls: [clusterUrl],
        secret: SECRET,
        nodeId: id,
        url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`,
        runtime: app.omflow.runtime,
        fence: app.omflow.deps.fence,
        knex: t.knex,
        log: createLogger({ name: id, level: 'silent' }),
        intervalMs: 300,
      });
      hb.start();
      heartbeats.push(hb);
    }
    const url = `https://localhost:${port}`;
    const agent = insecureAgent(false, 2);
    for (let i = 0; ; i++) {
      if (booster.role() === 'active' && booster.table.routable.length === 2) break;
      if (i > 600) throw new Error('the default cluster did not come up: active booster with two routable servers');
      await new Promise((r) => setTimeout(r, 100));
    }
    // Every worker routes too (each has the primary's table once it was pushed): a row of fresh
    // connections, which the kernel spreads over the workers, all answered.
    for (let ok = 0, i = 0; ok < 12; i++) {
      if (i > 600) throw new Error('the data-plane workers did not route to the servers');
      const fresh = insecureAgent(false, 1);
      const r = await fetch(`${url}/login`, { dispatcher: fresh }).catch(() => null);
      await r?.arrayBuffer();
      await fresh.close();
      ok = r?.status === 200 ? ok + 1 : 0;
      if (ok === 0) await new Promise((res) => setTimeout(res, 100));
    }
    const workerPids = () =>
      Object.values(cluster.workers ?? {})
        .filter((w) => w && !w.isDead())
        .map((w) => w!.process.pid!)
        .sort((a, b) => a - b);
    let cookie: string | null = null;
    return {
      booster,
      url,
      port,
      certFile,
      servers,
      logLines: () => lines.slice(),
      workerPids,
      async workerExits() {
        const r = await fetch(`${url}${BOOSTER_PATH.metrics}`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` }, dispatcher: agent });
        const text = await r.text();
        const m = /^omflow_booster_worker_exits_total (\d+)/m.exec(text);
        if (!m) throw new Error(`no omflow_booster_worker_exits_total in /_booster/metrics (${r.status})`);
        return Number(m[1]);
      },
      async metrics(names) {
        const r = await fetch(`${url}${BOOSTER_PATH.metrics}`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` }, dispatcher: agent });
        return (await r.text()).split('\n').filter((l) => !l.startsWith('#') && names.some((n) => l.includes(n)));
      },
      async adminCookie() {
        if (cookie) return cookie;
        const r = await fetch(`${url}/login`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ username: ADMIN.user, password: ADMIN.password }).toString(),
          redirect: 'manual',
          dispatcher: agent,
        });
        const set = r.headers.get('set-cookie');
        if (r.status !== 303 || !set) throw new Error(`admin sign-in through the booster answered ${r.status}`);
        cookie = set.split(';')[0];
        return cookie;
      },
      async close() {
        await agent.close();
        await close();
      },
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Other users while something else runs: `users` keep-alive connections (HTTP/1.1 over TLS) each
 * asking for the sign-in page in a loop. stop() says how many were served (200) of how many asked.
 */
export function otherUsers(url: string, users = 4, pauseMs = 25): { stop(): Promise<{ ok: number; total: number; failures: string[] }> } {
  const agent = insecureAgent(false, users);
  let running = true;
  let ok = 0;
  let total = 0;
  const failures: string[] = [];
  const loops = Array.from({ length: users }, async () => {
    while (running) {
      total++;
      try {
        const r = await fetch(`${url}/login`, { dispatcher: agent, signal: AbortSignal.timeout(10_000) });
        await r.arrayBuffer();
        if (r.status === 200) ok++;
        else if (failures.length < 20) failures.push(String(r.status));
      } catch (err) {
        if (failures.length < 20) failures.push((err as Error).message);
      }
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      await agent.close();
      return { ok, total, failures };
    },
  };
}
