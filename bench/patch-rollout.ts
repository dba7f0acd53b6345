// Patch rollout benchmark: 3 agents with real app servers behind a real booster, steady traffic
// through the booster, one patch applied → prints apply-to-all-nodes time and failed requests.
// Run: node --import tsx bench/patch-rollout.ts [--rps-workers 8] [--soak-ms 2000]
import { type ChildProcess, spawn } from 'node:child_process';
import { createPrivateKey } from 'node:crypto';
import { closeSync, cpSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase } from '../common/db/create-database.js';
import {
  applyPatch,
  buildPatch,
  collectDirectory,
  generatePatchKeyPair,
  loadTrustedKeys,
  notifyBoostersOfPatch,
  rolloutStatus,
} from '../common/patch/index.js';
import { audienceOf, signClusterRequest } from '../common/protocol/cluster-auth.js';
import { AGENT_PATH, HEADER } from '../common/protocol/headers.js';
import { freePort, ROOT, SECRET, startPostgres } from './booster-lib.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const WORKERS = arg('rps-workers', 8);
const SOAK_MS = arg('soak-ms', 2000);
const NODES = 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const work = mkdtempSync(join(tmpdir(), 'omflow-bench-rollout-'));
const children: ChildProcess[] = [];

function spawnGroup(name: string, args: string[], env: Record<string, string>): ChildProcess {
  const log = openSync(join(work, `${name}.log`), 'a');
  const child = spawn(process.execPath, [join(ROOT, 'common/bin/omflow.mjs'), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', OMFLOW_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', log, log],
    detached: true,
  });
  closeSync(log);
  children.push(child);
  return child;
}

async function waitUntil(fn: () => Promise<boolean>, what: string, timeoutMs = 90_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out: ${what}`);
}

async function agentStatus(port: number): Promise<{ state: string; version: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${AGENT_PATH.status}`, {
    headers: signClusterRequest(SECRET, 'bench', 'GET', AGENT_PATH.status, '', Date.now(), { audience: audienceOf(`http://127.0.0.1:${port}`) }),
    signal: AbortSignal.timeout(3000),
  });
  return (await res.json()) as { state: string; version: string };
}

async function main(): Promise<void> {
  const pg = await startPostgres();
  const key = generatePatchKeyPair();
  const boosterPort = await freePort();
  const base = { OMFLOW_CLUSTER_SECRET: SECRET, OMFLOW_DB_URL: pg.url, OMFLOW_PATCH_TRUSTED_KEYS: key.trustedEntry };
  try {
    spawnGroup('booster', ['booster'], {
      ...base,
      OMFLOW_NODE_ID: 'booster-1',
      OMFLOW_BOOSTER_HOST: '127.0.0.1',
      OMFLOW_BOOSTER_PORT: String(boosterPort),
      OMFLOW_DATA_DIR: join(work, 'booster'),
    });
    const boosterUrl = `http://127.0.0.1:${boosterPort}`;
    await waitUntil(async () => (await fetch(`${boosterUrl}/_booster/active`)).status === 200, 'active booster');
    const agents: { id: string; agentPort: number }[] = [];
    for (let i = 1; i <= NODES; i++) {
      const [agentPort, serverPort] = [await freePort(), await freePort()];
      const id = `node-${i}`;
      spawnGroup(id, ['agent'], {
        ...base,
        OMFLOW_NODE_ID: id,
        OMFLOW_DATA_DIR: join(work, id),
        BOOSTER_IP: '127.0.0.1',
        BOOSTER_PORT: String(boosterPort),
        OMFLOW_AGENT_HOST: '127.0.0.1',
        OMFLOW_AGENT_PORT: String(agentPort),
        OMFLOW_SERVER_HOST: '127.0.0.1',
        OMFLOW_SERVER_PORT: String(serverPort),
        OMFLOW_AGENT_SOAK_MS: String(SOAK_MS),
        OMFLOW_AGENT_PATCH_POLL_MS: '1000',
        OMFLOW_AGENT_DRAIN_SETTLE_MS: '1000',
      });
      agents.push({ id, agentPort });
    }
    await waitUntil(async () => (await Promise.all(agents.map((a) => agentStatus(a.agentPort)))).every((s) => s.state === 'running'), 'agents running');
    // Routable through the booster: every upstream seen at least once.
    const seen = new Set<string>();
    await waitUntil(async () => {
      const r = await fetch(`${boosterUrl}/login`);
      await r.arrayBuffer();
      const u = r.headers.get(HEADER.upstream);
      if (r.ok && u) seen.add(u);
      return seen.size >= NODES;
    }, 'booster routes to every server');

    // Steady traffic.
    let stop = false;
    const stats = { ok: 0, failed: 0, failures: new Map<string, number>() };
    const worker = async () => {
      while (!stop) {
        try {
          const r = await fetch(`${boosterUrl}/login`, { signal: AbortSignal.timeout(10_000) });
          await r.arrayBuffer();
          if (r.status < 500) stats.ok++;
          else {
            stats.failed++;
            stats.failures.set(`HTTP ${r.status}`, (stats.failures.get(`HTTP ${r.status}`) ?? 0) + 1);
          }
        } catch (err) {
          stats.failed++;
          const k = (err as Error).name;
          stats.failures.set(k, (stats.failures.get(k) ?? 0) + 1);
        }
      }
    };
    const workers = Array.from({ length: WORKERS }, worker);
    await sleep(1000);

    // The patch: this checkout's app-server code under a new version.
    const src = join(work, 'release');
    for (const part of ['server', 'common', 'migrations', 'package.json'])
      cpSync(join(ROOT, part), join(src, part), { recursive: true, filter: (s) => !s.includes('node_modules') });
    const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8'));
    const version = `${pkg.version}-bench`;
    pkg.version = version;
    writeFileSync(join(src, 'package.json'), JSON.stringify(pkg, null, 2));
    const bytes = buildPatch({ version, sequence: 1, privateKey: createPrivateKey(key.privatePem), entries: collectDirectory(src) }).bytes;

    const db = createDatabase({
      url: pg.url,
      client: 'postgres',
      host: '',
      port: undefined,
      name: '',
      user: '',
      password: undefined,
      ssl: false,
      poolMin: 0,
      poolMax: 2,
      connectTimeoutMs: 5000,
    });
    const t0 = Date.now();
    const stored = await applyPatch(db, bytes, loadTrustedKeys([key.trustedEntry], { includeVendor: false }));
    await notifyBoostersOfPatch([boosterUrl], { secret: SECRET, nodeId: 'bench' }, stored.notice);
    await waitUntil(
      async () => {
        const s = await Promise.all(agents.map((a) => agentStatus(a.agentPort)));
        const view = await rolloutStatus(db);
        return s.every((x) => x.version === version && x.state === 'running') && view.rollout!.nodes.filter((n) => n.state === 'done').length === NODES;
      },
      'every node on the new version',
      180_000,
    );
    const elapsed = (Date.now() - t0) / 1000;
    await sleep(1000);
    stop = true;
    await Promise.all(workers);
    await db.destroy();
    const total = stats.ok + stats.failed;
    console.log(`patch-rollout: ${NODES} nodes, patch ${(bytes.length / 1024).toFixed(0)} KiB, soak ${SOAK_MS} ms`);
    console.log(`  apply-to-all-nodes: ${elapsed.toFixed(1)} s (goal <= 60 s)`);
    console.log(
      `  requests through the booster: ${total}, failed: ${stats.failed} (goal 0)${stats.failed ? ` ${JSON.stringify(Object.fromEntries(stats.failures))}` : ''}`,
    );
    if (stats.failed) console.log(`  logs: ${work}`);
  } finally {
    for (const c of children.reverse()) {
      try {
        process.kill(-c.pid!, 'SIGTERM');
      } catch {
        /* gone */
      }
      await Promise.race([new Promise((r) => c.once('exit', r)), sleep(20_000)]);
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    await pg.stop();
    if (!process.argv.includes('--keep')) rmSync(work, { recursive: true, force: true });
  }
}

await main();
