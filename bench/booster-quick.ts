// bench/booster-quick: a short A/B aid for hot-path work (not the reference benchmark): the
// booster and HAProxy in front of one upstream (all on CPU 1, wrk on CPU 0), interleaved
// rounds, median req/s ratio booster / HAProxy, p99s, and the booster's CPU time per request
// (steadier than req/s on a shared machine).
// Usage: npx tsx bench/booster-quick.ts [--rounds 5] [--duration 3] [--post]
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startBoosterProcess, startPinned, startPostgres, statusGet, stop, tsxArgs, waitFor } from './booster-lib.js';

const args = process.argv.slice(2);
const opt = (n: string, d: number) => (args.includes(n) ? Number(args[args.indexOf(n) + 1]) : d);
const rounds = opt('--rounds', 5);
const duration = opt('--duration', 3);
const post = args.includes('--post');
const dir = mkdtempSync(join(tmpdir(), 'omflow-bquick-'));
const lua = join(dir, 'post.lua');
writeFileSync(lua, `wrk.method = "POST"\nwrk.body = string.rep("x", 1024)\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);

const cpuTicks = (pid: number) =>
  readFileSync(`/proc/${pid}/stat`, 'utf8')
    .split(') ')[1]
    .split(' ')
    .slice(11, 13)
    .reduce((s, x) => s + Number(x), 0);
function ms(v: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(v);
  return m ? Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1) : NaN;
}
function wrk(url: string): { rps: number; p99: number; requests: number } {
  const out = execFileSync('taskset', ['-c', '0', 'wrk', '-t1', '-c50', `-d${duration}s`, '--latency', ...(post ? ['-s', lua] : []), url], {
    encoding: 'utf8',
  });
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
    p99: ms(/\s99%\s+(\S+)/.exec(out)?.[1] ?? ''),
    requests: Number(/(\d+) requests in/.exec(out)?.[1]),
  };
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const pg = await startPostgres();
const kill: (() => Promise<void>)[] = [];
try {
  const upPort = await freePort();
  const bPort = await freePort();
  const hPort = await freePort();
  const bUrl = `http://127.0.0.1:${bPort}`;
  const up = await startPinned(
    '1',
    process.execPath,
    tsxArgs('bench/booster-upstream.ts'),
    { PORT: String(upPort), BOOSTERS: bUrl, NODE_ID: 'q-up' },
    /LISTENING/,
  );
  kill.push(() => stop(up.child));
  const b = startBoosterProcess('1', { OMFLOW_DB_URL: pg.url, OMFLOW_NODE_ID: 'q-b', OMFLOW_BOOSTER_PORT: String(bPort), OMFLOW_BOOSTER_SLOW_START_MS: '0' });
  kill.push(() => stop(b));
  await waitFor(
    async () => ((await (await statusGet(bUrl)).json()) as { servers: { state: string }[] }).servers.some((s) => s.state === 'up'),
    'booster ready',
  );
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(
    conf,
    `global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  option http-keep-alive\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:${hPort}\n  default_backend be\nbackend be\n  server s1 127.0.0.1:${upPort}\n`,
  );
  if (spawnSync('which', ['haproxy']).status !== 0) throw new Error('haproxy is not installed');
  const h = await startPinned('1', 'haproxy', ['-f', conf, '-db'], {});
  kill.push(() => stop(h.child));
  await waitFor(async () => (await fetch(`http://127.0.0.1:${hPort}/`)).ok, 'haproxy');
  wrk(`${bUrl}/`);
  wrk(`http://127.0.0.1:${hPort}/`);
  const ratios: number[] = [];
  const cpus: number[] = [];
  const upB: number[] = [];
  const upH: number[] = [];
  const bp99: number[] = [];
  const hp99: number[] = [];
  const brps: number[] = [];
  for (let i = 0; i < rounds; i++) {
    // The upstream shares CPU 1: its cost per request behind each proxy counts too.
    const upPid = up.child.pid!;
    const t0 = cpuTicks(b.pid!);
    let u0 = cpuTicks(upPid);
    const rb = wrk(`${bUrl}/`);
    const cpu = ((cpuTicks(b.pid!) - t0) * 10_000) / rb.requests;
    upB.push(((cpuTicks(upPid) - u0) * 10_000) / rb.requests);
    u0 = cpuTicks(upPid);
    const rh = wrk(`http://127.0.0.1:${hPort}/`);
    upH.push(((cpuTicks(upPid) - u0) * 10_000) / rh.requests);
    ratios.push(rb.rps / rh.rps);
    cpus.push(cpu);
    bp99.push(rb.p99);
    hp99.push(rh.p99);
    brps.push(rb.rps);
    process.stderr.write(
      `round ${i + 1}: booster ${rb.rps.toFixed(0)} req/s (p99 ${rb.p99} ms, ${cpu.toFixed(1)} µs CPU/req), haproxy ${rh.rps.toFixed(0)} req/s (p99 ${rh.p99} ms), ratio ${(rb.rps / rh.rps).toFixed(2)}\n`,
    );
  }
  console.log(
    `booster-quick ${post ? 'POST 1KB' : 'GET'}: median booster ${median(brps).toFixed(0)} req/s, booster/haproxy ${median(ratios).toFixed(2)}, booster CPU ${median(cpus).toFixed(1)} µs/req, p99 booster ${median(bp99).toFixed(2)} ms vs haproxy ${median(hp99).toFixed(2)} ms; upstream CPU ${median(upB).toFixed(1)} µs/req behind the booster, ${median(upH).toFixed(1)} behind haproxy`,
  );
} finally {
  for (const k of kill.reverse()) await k();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
