// bench/lean-proxy-experiment (issue 13): how far a lean HTTP/1.1 data plane on node:net with
// Node's own llhttp binding (bench/lean-proxy-server.ts) gets vs HAProxy, fastify +
// @fastify/reply-from and the minimal undici proxy, plus two ceiling rows that answer by
// themselves with no upstream: a bare node:http server and a bare net + llhttp server (the
// most a proxy built on either could reach on one core). GET and 1 KB POST, wrk -t1 on CPU 0,
// every server on CPU 1, interleaved rounds, median. --profile: the lean proxy again under
// node --cpu-prof during a GET and a POST run, with a self-time split by layer. lean-consume is
// the same proxy with parser.consume(handle) (reads go into llhttp in C++, as node:http does).
// Hybrids to split the cost by layer (lean = net + llhttp server side + raw net + llhttp client side):
// http-rawclient (node:http server side + raw client side), net-undici (lean server side + undici
// Pool.dispatch), http-undici (node:http + undici Pool.dispatch: the booster's shape without its logic).
// Besides req/s and latency, every row has the CPU its own process spent per request (/proc, user + kernel).
// Usage: npx tsx bench/lean-proxy-experiment.ts [--duration 3] [--connections 50] [--rounds 3] [--profile] [--profile-consume] [--only lean,haproxy]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, median, RoundMedians, startPinned, stop, tsxArgs, type WrkFigures, waitFor, writePostScript, wrk } from './booster-lib.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number) => Number(args[args.indexOf(name) + 1] || 0) || dflt;
const duration = opt('--duration', 3);
const connections = opt('--connections', 50);
const rounds = opt('--rounds', 3);
const profile = args.includes('--profile') || args.includes('--profile-consume');
// --profile-consume: profile the lean-consume variant instead
const profileConsume = args.includes('--profile-consume');
const only = args.includes('--only') ? new Set(args[args.indexOf('--only') + 1].split(',')) : null;
const dir = mkdtempSync(join(tmpdir(), 'omflow-lean-'));
const postLua = writePostScript(dir);

type Figures = WrkFigures & { cpuUs: number; sysUs: number; upCpuUs: number };
type Result = Figures & { name: string; kind: string };

/** CPU time (user + system, all threads) a process has used, in µs (/proc/<pid>/stat, 100 Hz ticks). */
function cpuUs(pid: number | undefined, sysOnly = false): number {
  if (!pid) return NaN;
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return ((sysOnly ? 0 : Number(f[11])) + Number(f[12])) * 10_000;
}

/** wrk against a target, with the CPU the target process and the upstream process spent per request. */
function measure(t: Target, post: boolean): Figures {
  const c0 = cpuUs(t.pid);
  const s0 = cpuUs(t.pid, true);
  const u0 = cpuUs(upPid);
  const r: Figures = { ...load(`${t.url}/`, post), cpuUs: Number.NaN, sysUs: Number.NaN, upCpuUs: Number.NaN };
  r.cpuUs = (cpuUs(t.pid) - c0) / r.requests;
  r.sysUs = (cpuUs(t.pid, true) - s0) / r.requests;
  if (t.pid !== upPid) r.upCpuUs = (cpuUs(upPid) - u0) / r.requests;
  return r;
}

/** wrk -t1 on CPU 0; a 1 KB POST unless `post` is false. */
const load = (url: string, post: boolean) => wrk(url, { connections, durationS: duration, postScript: post ? postLua : undefined });

const rows = new RoundMedians<Figures>(['errors', 'requests']);
const results: Result[] = rows.results;
const record = (kind: string, name: string, r: Figures) => rows.record(kind, name, r);

const children: { kill: () => Promise<void> }[] = [];
type Target = { name: string; url: string; pid?: number };
const targets: Target[] = [];
let upPid: number | undefined;
const want = (name: string) => !only || only.has(name);
const leanServer = (mode: string, port: number, upstream: string, extra: string[] = [], env: Record<string, string> = {}) =>
  startPinned(
    '1',
    process.execPath,
    [...extra, ...tsxArgs('bench/lean-proxy-server.ts')],
    { MODE: mode, PORT: String(port), UPSTREAM: upstream, ...env },
    /LISTENING/,
  );

/** Self time of a .cpuprofile by layer (the URL / function of each sampled frame). */
function splitProfile(file: string): { layer: string; pct: number; busyPct: number }[] {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: { id: number; callFrame: { functionName: string; url: string } }[];
    samples: number[];
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n.callFrame]));
  const counts = new Map<string, number>();
  for (const id of prof.samples) {
    const f = byId.get(id)!;
    const u = f.url;
    let layer: string;
    if (f.functionName === '(idle)') layer = '(idle: waiting in epoll)';
    else if (f.functionName === '(garbage collector)') layer = '(garbage collector)';
    else if (f.functionName === '(program)') layer = '(program: native, libuv, syscalls outside JS frames)';
    else if (u.includes('lean-proxy-server')) layer = `lean-proxy-server.ts ${f.functionName || '(anonymous)'}`;
    else if (/^node:(net|stream|internal\/streams|internal\/stream_base_commons)/.test(u)) layer = 'node: net + streams (JS)';
    else if (u === '' && f.functionName) layer = `native: ${f.functionName}`;
    else if (u.startsWith('node:')) layer = `node: other (${u.replace(/^node:(internal\/)?/, '')})`;
    else layer = `other (${u.split('/').slice(-2).join('/')})`;
    counts.set(layer, (counts.get(layer) ?? 0) + 1);
  }
  const total = prof.samples.length;
  // CPU 1 is shared with the upstream: idle is mostly the upstream's turn, so also give shares of busy time
  const busy = total - (counts.get('(idle: waiting in epoll)') ?? 0);
  return [...counts.entries()]
    .map(([layer, n]) => ({ layer, pct: (100 * n) / total, busyPct: layer.startsWith('(idle') ? NaN : (100 * n) / busy }))
    .sort((a, b) => b.pct - a.pct);
}

const profiles: { kind: string; rows: { layer: string; pct: number; busyPct: number }[] }[] = [];
try {
  const upPort = await freePort();
  const upstream = `http://127.0.0.1:${upPort}`;
  const up = await startPinned('1', process.execPath, tsxArgs('bench/booster-upstream.ts'), { PORT: String(upPort), NODE_ID: 'bench-up' }, /LISTENING/);
  children.push({ kill: () => stop(up.child) });
  upPid = up.child.pid; // taskset execs the command: the pid is the server's
  if (want('direct')) targets.push({ name: 'direct', url: upstream, pid: upPid });

  for (const mode of ['ceiling-http', 'ceiling-net']) {
    if (!want(mode)) continue;
    const port = await freePort();
    const c = await leanServer(mode, port, upstream);
    children.push({ kill: () => stop(c.child) });
    targets.push({ name: mode, url: `http://127.0.0.1:${port}`, pid: c.child.pid });
  }
  if (want('haproxy') && spawnSync('which', ['haproxy']).status === 0) {
    // the same configuration as bench/booster-throughput
    const port = await freePort();
    const conf = join(dir, 'haproxy.cfg');
    writeFileSync(
      conf,
      `global\n  nbthread 1\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  option http-keep-alive\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:${port}\n  default_backend be\nbackend be\n  server s1 127.0.0.1:${upPort}\n`,
    );
    const h = await startPinned('1', 'haproxy', ['-f', conf, '-db'], {});
    children.push({ kill: () => stop(h.child) });
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/`)).ok, 'haproxy');
    targets.push({ name: 'haproxy', url: `http://127.0.0.1:${port}`, pid: h.child.pid });
  }
  if (want('fastify-reply-from')) {
    const port = await freePort();
    const f = await startPinned('1', process.execPath, tsxArgs('bench/booster-fastify-proxy.ts'), { PORT: String(port), UPSTREAM: upstream }, /LISTENING/);
    children.push({ kill: () => stop(f.child) });
    targets.push({ name: 'fastify-reply-from', url: `http://127.0.0.1:${port}`, pid: f.child.pid });
  }
  if (want('undici-minimal')) {
    const port = await freePort();
    const u = await startPinned('1', process.execPath, tsxArgs('bench/booster-undici-proxy.ts'), { PORT: String(port), UPSTREAM: upstream }, /LISTENING/);
    children.push({ kill: () => stop(u.child) });
    targets.push({ name: 'undici-minimal', url: `http://127.0.0.1:${port}`, pid: u.child.pid });
  }
  if (want('lean')) {
    const port = await freePort();
    const l = await leanServer('proxy', port, upstream);
    children.push({ kill: () => stop(l.child) });
    targets.push({ name: 'lean', url: `http://127.0.0.1:${port}`, pid: l.child.pid });
  }
  if (want('lean-consume')) {
    // the same proxy with parser.consume(handle) on both sides (reads straight into llhttp)
    const port = await freePort();
    const l = await leanServer('proxy', port, upstream, [], { LEAN_CONSUME: '1' });
    children.push({ kill: () => stop(l.child) });
    targets.push({ name: 'lean-consume', url: `http://127.0.0.1:${port}`, pid: l.child.pid });
  }
  // Which layer costs what: each server side (node:http, net + llhttp) with each client side (raw, undici).
  for (const mode of ['http-rawclient', 'net-undici', 'http-undici']) {
    if (!want(mode)) continue;
    const port = await freePort();
    const c = await leanServer(mode, port, upstream);
    children.push({ kill: () => stop(c.child) });
    targets.push({ name: mode, url: `http://127.0.0.1:${port}`, pid: c.child.pid });
  }

  for (const kind of ['GET', 'POST 1KB']) {
    for (const t of targets) load(`${t.url}/`, kind !== 'GET'); // warm-up
    for (let round = 0; round < rounds; round++) {
      for (const t of targets) {
        const r = measure(t, kind !== 'GET');
        process.stderr.write(`${kind} ${t.name} round ${round + 1}: ${r.rps.toFixed(0)} req/s, ${r.cpuUs.toFixed(1)} µs CPU/req\n`);
        record(kind, t.name, r);
      }
    }
  }

  if (profile) {
    // A separate lean proxy under --cpu-prof (the profiler costs throughput: figures above stay clean).
    for (const kind of ['GET', 'POST 1KB']) {
      const profDir = mkdtempSync(join(dir, 'prof-'));
      const port = await freePort();
      const l = await leanServer('proxy', port, upstream, ['--cpu-prof', `--cpu-prof-dir=${profDir}`], { LEAN_CONSUME: profileConsume ? '1' : '0' });
      load(`http://127.0.0.1:${port}/`, kind !== 'GET'); // warm-up
      const r = load(`http://127.0.0.1:${port}/`, kind !== 'GET');
      process.stderr.write(`profile ${kind}: ${r.rps.toFixed(0)} req/s under the profiler\n`);
      // --cpu-prof writes on a normal exit; the server exits on SIGINT (give it time to write)
      const exited = new Promise((r) => l.child.once('exit', r));
      l.child.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      await stop(l.child);
      // one file per thread (tsx's loader has its own): the main thread's is the largest
      const file = readdirSync(profDir)
        .filter((f) => f.endsWith('.cpuprofile'))
        .sort((x, y) => statSync(join(profDir, y)).size - statSync(join(profDir, x)).size)[0];
      if (file) profiles.push({ kind, rows: splitProfile(join(profDir, file)) });
      else process.stderr.write(`profile ${kind}: no .cpuprofile written\n`);
    }
  }
} finally {
  for (const c of children.reverse()) await c.kill();
  rmSync(dir, { recursive: true, force: true });
}

console.log(`\nlean-proxy-experiment: wrk -t1 -c${connections} -d${duration}s on CPU 0; servers + upstream on CPU 1; median of ${rounds} interleaved rounds\n`);
console.log(
  'kind      target               req/s  x haproxy  x fastify   p50 ms   p99 ms  p99 x haproxy  errors   CPU µs/req: own (of it kernel)  upstream   req/s per own core  x haproxy',
);
for (const kind of ['GET', 'POST 1KB']) {
  const get = (n: string) => results.find((r) => r.kind === kind && r.name === n);
  const ha = get('haproxy');
  const fr = get('fastify-reply-from');
  const ratio = (a: number, b: number | undefined) => (b ? (a / b).toFixed(2) : 'n/a').padStart(9);
  for (const r of results.filter((x) => x.kind === kind)) {
    const perCore = 1e6 / r.cpuUs;
    console.log(
      `${kind.padEnd(9)} ${r.name.padEnd(19)} ${r.rps.toFixed(0).padStart(6)}  ${ratio(r.rps, ha?.rps)}  ${ratio(r.rps, fr?.rps)}   ${r.p50.toFixed(2).padStart(6)}   ${r.p99.toFixed(2).padStart(6)}      ${ratio(r.p99, ha?.p99)}  ${String(r.errors).padStart(6)}   ${r.cpuUs.toFixed(1).padStart(8)} (${r.sysUs.toFixed(1).padStart(5)})      ${Number.isNaN(r.upCpuUs) ? '       -' : r.upCpuUs.toFixed(1).padStart(8)}            ${perCore.toFixed(0).padStart(8)}  ${ratio(perCore, ha ? 1e6 / ha.cpuUs : undefined)}`,
    );
  }
  // Paired per round (the same minute of a noisy shared machine): median of the round ratios.
  const paired = (a: string, b: string, f: (x: Figures) => number) => {
    const xs = rows.roundsOf(kind, a);
    const ys = rows.roundsOf(kind, b);
    if (!xs || !ys) return 'n/a';
    return median(xs.map((x, i) => f(x) / f(ys[i]))).toFixed(2);
  };
  for (const name of ['lean', 'lean-consume']) {
    const l = get(name);
    if (!l) continue;
    console.log(
      `  ${name} / haproxy = ${ratio(l.rps, ha?.rps).trim()} (paired ${paired(name, 'haproxy', (x) => x.rps)}; goal >= 0.5); ${name} / fastify-reply-from = ${ratio(l.rps, fr?.rps).trim()} (paired ${paired(name, 'fastify-reply-from', (x) => x.rps)}; goal >= 1.5); p99 ${name} / haproxy = ${ratio(l.p99, ha?.p99).trim()} (paired ${paired(name, 'haproxy', (x) => x.p99)}; goal <= 2); CPU per request ${name} / haproxy = ${ratio(l.cpuUs, ha?.cpuUs).trim()}`,
    );
  }
  console.log('');
}
for (const p of profiles) {
  console.log(`CPU profile of the lean${profileConsume ? '-consume' : ''} proxy, ${p.kind} (self time by layer, top 25; % of all samples, % of busy samples):`);
  for (const r of p.rows.slice(0, 25))
    console.log(`  ${r.pct.toFixed(1).padStart(5)} %  ${Number.isNaN(r.busyPct) ? '       ' : `${r.busyPct.toFixed(1).padStart(5)} %`}  ${r.layer}`);
  console.log('');
}
