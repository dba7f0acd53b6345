// Profiling aid for the booster hot path (not a benchmark): runs wrk GET against a booster
// started with --cpu-prof and prints the functions with the most self time.
// Usage: npx tsx bench/booster-profile.ts [--post] [--target booster|undici|fastify]
// (--target undici|fastify measures the baselines' CPU per request instead, without a profile)
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, ROOT, SECRET, startPinned, startPostgres, statusGet, stop, tsxArgs, waitFor } from './booster-lib.js';

const post = process.argv.includes('--post');
const target = process.argv.includes('--target') ? process.argv[process.argv.indexOf('--target') + 1] : 'booster';
let wrkStartMs = 0;
const dir = mkdtempSync(join(tmpdir(), 'omflow-bprof-'));
const pg = await startPostgres();
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const upPort = await freePort();
const up = (
  await startPinned('1', process.execPath, tsxArgs('bench/booster-upstream.ts'), { PORT: String(upPort), BOOSTERS: url, NODE_ID: 'p-up' }, /LISTENING/)
).child;
const baseline = target === 'undici' ? 'bench/booster-undici-proxy.ts' : target === 'fastify' ? 'bench/booster-fastify-proxy.ts' : null;
const cmd = baseline
  ? [process.execPath, '--cpu-prof', `--cpu-prof-dir=${dir}`, '--import', 'tsx', baseline]
  : [process.execPath, '--cpu-prof', `--cpu-prof-dir=${dir}`, 'common/bin/omflow.mjs', 'booster'];
const spawnedAt = Date.now();
const b = spawn('taskset', ['-c', '1', ...cmd], {
  cwd: ROOT,
  env: {
    ...process.env,
    PORT: String(port),
    UPSTREAM: `http://127.0.0.1:${upPort}`,
    OMFLOW_CLUSTER_SECRET: SECRET,
    OMFLOW_DB_URL: pg.url,
    OMFLOW_NODE_ID: 'p-b',
    OMFLOW_BOOSTER_HOST: '127.0.0.1',
    OMFLOW_BOOSTER_PORT: String(port),
    OMFLOW_LOG_LEVEL: 'error',
    OMFLOW_BOOSTER_SLOW_START_MS: '0',
    OMFLOW_BOOSTER_WORKERS: '1',
  },
  stdio: 'inherit',
});
try {
  if (baseline) await waitFor(async () => (await fetch(`${url}/`)).ok, 'ready');
  else await waitFor(async () => ((await (await statusGet(url)).json()) as { servers: { state: string }[] }).servers.some((s) => s.state === 'up'), 'ready');
  const lua = join(dir, 'post.lua');
  writeFileSync(lua, `wrk.method = "POST"\nwrk.body = string.rep("x", 1024)\n`);
  // CPU time per request is steadier than req/s on a shared machine.
  const cpu = () =>
    readFileSync(`/proc/${b.pid}/stat`, 'utf8')
      .split(') ')[1]
      .split(' ')
      .slice(11, 13)
      .reduce((s, x) => s + Number(x), 0);
  const before = cpu();
  wrkStartMs = Date.now() - spawnedAt;
  const out = execFileSync('taskset', ['-c', '0', 'wrk', '-t1', '-c50', '-d5s', ...(post ? ['-s', lua] : []), `${url}/`], { encoding: 'utf8' });
  const ticks = cpu() - before;
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  console.log(out);
  console.log(`${target} CPU: ${((ticks * 10_000) / requests).toFixed(1)} µs per request (${requests} requests)`);
} finally {
  await stop(b);
  await stop(up);
  await pg.stop();
}
const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))!;
const profText = readFileSync(join(dir, file), 'utf8');
rmSync(dir, { recursive: true, force: true });
const prof = JSON.parse(profText) as {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount: number }[];
  samples: number[];
  timeDeltas: number[];
};
// Only samples taken while wrk ran (start-up and module loading left out).
const hits = new Map<number, number>();
let t = 0;
for (let i = 0; i < prof.samples.length; i++) {
  t += prof.timeDeltas[i];
  if (t >= wrkStartMs * 1000) hits.set(prof.samples[i], (hits.get(prof.samples[i]) ?? 0) + 1);
}
for (const n of prof.nodes) n.hitCount = hits.get(n.id) ?? 0;
const self = new Map<string, number>();
let total = 0;
for (const n of prof.nodes) {
  total += n.hitCount;
  const k = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/main\//, '')}:${n.callFrame.lineNumber}`;
  self.set(k, (self.get(k) ?? 0) + n.hitCount);
}
for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 35)) console.log(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
