// bench/booster-throughput: GET and 1 KB POST through the booster vs directly vs nginx, HAProxy,
// a minimal undici proxy and fastify + @fastify/reply-from, in one run; the booster twice: as
// configured (lean HTTP/1.1 path on) and with OMFLOW_BOOSTER_LEAN_HTTP1=false (node:http + undici). wrk runs on CPU 0,
// proxies and the upstream on CPU 1. Prints req/s, p50, p99 and each as a ratio of direct.
// HTTPS rows: the booster and HAProxy terminating TLS with the same certificate (wrk, keep-alive),
// and an h2 row (h2load, nghttp2-client) for both. A multi-core section: the booster with 1 and
// with 2 data-plane workers (OMFLOW_BOOSTER_WORKERS) and HAProxy with 2 threads, every process
// (wrk -t2 too) on the same 2 CPUs. Every figure is the median of the interleaved rounds.
// The access log's cost: the same booster once more with OMFLOW_BOOSTER_ACCESS_LOG=json to a file
// (every request logged), in the same rounds; --access-log-only runs just direct and the two.
// --baseline DIR adds the booster run from another checkout (e.g. `git worktree add /tmp/before
// <commit>`, node_modules linked), in the same rounds: a before/after comparison in one run. With
// --access-log-only that booster has its access log on as well: the log's before/after.
// Usage: npx tsx bench/booster-throughput.ts [--duration 5] [--connections 50] [--rounds 3] [--no-multicore] [--no-tls] [--tls-only] [--access-log-only] [--baseline DIR]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  addDatabase,
  cpuTicks,
  freePort,
  h2load,
  makeBenchCert,
  median,
  RoundMedians,
  startBoosterProcess,
  startPinned,
  startPostgres,
  statusGet,
  stop,
  tsxArgs,
  type WrkFigures,
  waitFor,
  writePostScript,
  wrk,
} from './booster-lib.js';

const args = process.argv.slice(2);
const duration = Number(args[args.indexOf('--duration') + 1] || 0) || 5;
const connections = Number(args[args.indexOf('--connections') + 1] || 0) || 50;
// The machine is shared: targets are measured in interleaved rounds and the median round counts.
const multicore = !args.includes('--no-multicore');
// --no-tls: leave the HTTPS and h2 rows out (a shorter run when only plain HTTP is asked).
const withTls = !args.includes('--no-tls');
const rounds = Number(args[args.indexOf('--rounds') + 1] || 0) || 3;
// --tls-only: only direct, the plain booster and the TLS rows (HTTPS booster and HAProxy, h2).
const tlsOnly = args.includes('--tls-only');
// --access-log-only: direct, the booster and the booster with its access log on; nothing else.
const accessLogOnly = args.includes('--access-log-only');
const baselineTree = args.includes('--baseline') ? args[args.indexOf('--baseline') + 1] : undefined;
const dir = mkdtempSync(join(tmpdir(), 'omflow-bench-'));
const postLua = writePostScript(dir);

type Result = { name: string; kind: string; rps: number; p50: number; p99: number; errors: number };

/** wrk on `cpus` with `threads` threads; a 1 KB POST unless `post` is false. */
const load = (url: string, post: boolean, cpus = '0', threads = 1) =>
  wrk(url, { connections, durationS: duration, postScript: post ? postLua : undefined, cpus, threads });

/** What a target answers when wrk counted errors (a figure with errors is not a throughput figure). */
async function sampleError(url: string): Promise<void> {
  const r = await fetch(`${url}/`).catch((err: Error) => ({ status: 0, text: async () => err.message }));
  process.stderr.write(`  ${url} now answers ${r.status}: ${(await r.text()).slice(0, 200)}\n`);
}

const children: { kill: () => Promise<void> }[] = [];
const rows = new RoundMedians<Omit<Result, 'name' | 'kind'>>(['errors']);
const results: Result[] = rows.results;
const record = (kind: string, name: string, r: WrkFigures) => rows.record(kind, name, { rps: r.rps, p50: r.p50, p99: r.p99, errors: r.errors });
const multiResults: Result[] = [];
const h2results: { name: string; rps: number; meanMs: number; errors: number }[] = [];
const h2rounds = new Map<string, { rps: number; meanMs: number; errors: number }[]>();
const tlsTargets: { name: string; url: string }[] = [];
let accessLogLines = 0;
/** The booster's own CPU per request with the access log off and on (µs; the steadier figure on a shared machine). */
const cpuPerRequest = new Map<string, number[]>();
const cpuPids = new Map<string, number>();
/** Each round's req/s per target, for ratios paired within a round (steadier than a ratio of medians on a shared machine). */
const roundRps = new Map<string, number[]>();
const pg = await startPostgres();
try {
  const upPort = await freePort();
  const boosterPort = await freePort();
  const boosterUrl = `http://127.0.0.1:${boosterPort}`;
  const upstream = `http://127.0.0.1:${upPort}`;
  // A second booster with the certificate, serving as standby (the cluster API stays plain on its port).
  const tlsPort = await freePort();
  const tlsBoosterUrl = `http://127.0.0.1:${tlsPort}`;
  // A third booster with the lean HTTP/1.1 path off (node:http + undici only), as a standby that serves.
  const nodeHttpPort = await freePort();
  const nodeHttpBoosterUrl = `http://127.0.0.1:${nodeHttpPort}`;
  // A fourth with the access log on (JSON, every request, to a file), the active of a database of its own.
  const accessLogPort = await freePort();
  const accessLogBoosterUrl = `http://127.0.0.1:${accessLogPort}`;
  const accessLogFile = join(dir, 'access.log');
  // A fifth from the --baseline checkout, the active of a database of its own.
  const baselinePort = await freePort();
  const baselineBoosterUrl = `http://127.0.0.1:${baselinePort}`;
  const cert = makeBenchCert(dir);
  const up = await startPinned(
    '1',
    process.execPath,
    tsxArgs('bench/booster-upstream.ts'),
    {
      PORT: String(upPort),
      BOOSTERS: [boosterUrl, tlsBoosterUrl, nodeHttpBoosterUrl, accessLogBoosterUrl, ...(baselineTree ? [baselineBoosterUrl] : [])].join(','),
      NODE_ID: 'bench-up',
    },
    /LISTENING/,
  );
  children.push({ kill: () => stop(up.child) });

  const booster = startBoosterProcess('1', {
    OMFLOW_DB_URL: pg.url,
    OMFLOW_NODE_ID: 'bench-booster',
    OMFLOW_BOOSTER_PORT: String(boosterPort),
    OMFLOW_BOOSTER_SLOW_START_MS: '0',
  });
  children.push({ kill: () => stop(booster) });
  await waitFor(async () => {
    const r = await statusGet(boosterUrl);
    const st = (await r.json()) as { role: string; servers: { state: string }[] };
    return st.role === 'active' && st.servers.some((s) => s.state === 'up');
  }, 'booster active with the upstream up');
  // Started right after the first: its port was picked early and must not meet an outgoing connection's.
  const nodeHttpBooster = startBoosterProcess('1', {
    OMFLOW_DB_URL: pg.url,
    OMFLOW_NODE_ID: 'bench-booster-node-http',
    OMFLOW_BOOSTER_PORT: String(nodeHttpPort),
    OMFLOW_BOOSTER_SLOW_START_MS: '0',
    OMFLOW_BOOSTER_STANDBY_SERVES: 'true',
    OMFLOW_BOOSTER_LEAN_HTTP1: 'false',
  });
  children.push({ kill: () => stop(nodeHttpBooster) });
  await waitFor(async () => {
    const st = (await (await statusGet(nodeHttpBoosterUrl)).json()) as { servers: { state: string }[] };
    return st.servers.some((x) => x.state === 'up');
  }, 'node:http booster with the upstream up');

  // Its own database: it is the active of a cluster of its own, as the booster it is compared with.
  const accessLogBooster = startBoosterProcess('1', {
    OMFLOW_DB_URL: await addDatabase(pg.url, 'bench_access_log'),
    OMFLOW_NODE_ID: 'bench-booster-access-log',
    OMFLOW_BOOSTER_PORT: String(accessLogPort),
    OMFLOW_BOOSTER_SLOW_START_MS: '0',
    OMFLOW_BOOSTER_STANDBY_SERVES: 'true',
    OMFLOW_BOOSTER_ACCESS_LOG: 'json',
    OMFLOW_BOOSTER_ACCESS_LOG_FILE: accessLogFile,
  });
  children.push({ kill: () => stop(accessLogBooster) });
  cpuPids.set('booster', booster.pid!);
  cpuPids.set('booster-access-log', accessLogBooster.pid!);
  await waitFor(async () => {
    const st = (await (await statusGet(accessLogBoosterUrl)).json()) as { servers: { state: string }[] };
    return st.servers.some((x) => x.state === 'up');
  }, 'access-log booster with the upstream up');

  if (baselineTree) {
    const baselineBooster = startBoosterProcess(
      '1',
      {
        OMFLOW_DB_URL: await addDatabase(pg.url, 'bench_baseline'),
        OMFLOW_NODE_ID: 'bench-booster-baseline',
        OMFLOW_BOOSTER_PORT: String(baselinePort),
        OMFLOW_BOOSTER_SLOW_START_MS: '0',
        OMFLOW_BOOSTER_STANDBY_SERVES: 'true',
        ...(accessLogOnly ? { OMFLOW_BOOSTER_ACCESS_LOG: 'json', OMFLOW_BOOSTER_ACCESS_LOG_FILE: join(dir, 'access-baseline.log') } : {}),
      },
      baselineTree,
    );
    children.push({ kill: () => stop(baselineBooster) });
    cpuPids.set('booster-baseline', baselineBooster.pid!);
    await waitFor(async () => {
      const st = (await (await statusGet(baselineBoosterUrl)).json()) as { servers: { state: string }[] };
      return st.servers.some((x) => x.state === 'up');
    }, `baseline booster (${baselineTree}) with the upstream up`);
  }

  const tlsBooster = startBoosterProcess('1', {
    OMFLOW_DB_URL: pg.url,
    OMFLOW_NODE_ID: 'bench-booster-tls',
    OMFLOW_BOOSTER_PORT: String(tlsPort),
    OMFLOW_BOOSTER_SLOW_START_MS: '0',
    OMFLOW_BOOSTER_STANDBY_SERVES: 'true',
    OMFLOW_BOOSTER_TLS_CERT_FILE: cert.certFile,
    OMFLOW_BOOSTER_TLS_KEY_FILE: cert.keyFile,
  });
  children.push({ kill: () => stop(tlsBooster) });
  await waitFor(async () => {
    const r = await statusGet(tlsBoosterUrl);
    const st = (await r.json()) as { servers: { state: string }[] };
    return st.servers.some((s) => s.state === 'up');
  }, 'TLS booster with the upstream up');
  tlsTargets.push({ name: 'booster-tls', url: `https://127.0.0.1:${tlsPort}` });

  const targets: { name: string; url: string }[] = [
    { name: 'direct', url: upstream },
    { name: 'booster', url: boosterUrl },
  ];
  if (baselineTree) targets.push({ name: 'booster-baseline', url: baselineBoosterUrl });
  if (!tlsOnly) targets.push({ name: 'booster-access-log', url: accessLogBoosterUrl });
  if (!tlsOnly && !accessLogOnly) targets.push({ name: 'booster-node-http', url: nodeHttpBoosterUrl });

  if (!tlsOnly && !accessLogOnly) await startOtherProxies();
  async function startOtherProxies(): Promise<void> {
    const undiciPort = await freePort();
    const u = await startPinned('1', process.execPath, tsxArgs('bench/booster-undici-proxy.ts'), { PORT: String(undiciPort), UPSTREAM: upstream }, /LISTENING/);
    children.push({ kill: () => stop(u.child) });
    targets.push({ name: 'undici-minimal', url: `http://127.0.0.1:${undiciPort}` });

    const fastifyPort = await freePort();
    const f = await startPinned(
      '1',
      process.execPath,
      tsxArgs('bench/booster-fastify-proxy.ts'),
      { PORT: String(fastifyPort), UPSTREAM: upstream },
      /LISTENING/,
    );
    children.push({ kill: () => stop(f.child) });
    targets.push({ name: 'fastify-reply-from', url: `http://127.0.0.1:${fastifyPort}` });

    if (spawnSync('which', ['nginx']).status === 0) {
      const port = await freePort();
      const conf = join(dir, 'nginx.conf');
      writeFileSync(
        conf,
        `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err warn;
events { worker_connections 4096; }
http { access_log off; upstream up { server 127.0.0.1:${upPort}; keepalive 256; }
  server { listen 127.0.0.1:${port}; client_body_buffer_size 64k;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_request_buffering off; proxy_buffering off; } } }
`,
      );
      const n = await startPinned('1', 'nginx', ['-c', conf, '-p', dir], {});
      children.push({ kill: () => stop(n.child) });
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/`)).ok, 'nginx');
      targets.push({ name: 'nginx', url: `http://127.0.0.1:${port}` });
    }
    if (spawnSync('which', ['haproxy']).status === 0) {
      const port = await freePort();
      const conf = join(dir, 'haproxy.cfg');
      writeFileSync(
        conf,
        `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  server s1 127.0.0.1:${upPort}
`,
      );
      const h = await startPinned('1', 'haproxy', ['-f', conf, '-db'], {});
      children.push({ kill: () => stop(h.child) });
      await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/`)).ok, 'haproxy');
      targets.push({ name: 'haproxy', url: `http://127.0.0.1:${port}` });
    }
  }
  if (spawnSync('which', ['haproxy']).status === 0) {
    const tport = await freePort();
    const tconf = join(dir, 'haproxy-tls.cfg');
    writeFileSync(
      tconf,
      `global
  nbthread 1
  maxconn 4096
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:${tport} ssl crt ${cert.combined} alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:${upPort}
`,
    );
    const ht = await startPinned('1', 'haproxy', ['-f', tconf, '-db'], {});
    children.push({ kill: () => stop(ht.child) });
    await waitFor(async () => spawnSync('curl', ['-skf', '-o', '/dev/null', `https://127.0.0.1:${tport}/`]).status === 0, 'haproxy tls');
    tlsTargets.push({ name: 'haproxy-tls', url: `https://127.0.0.1:${tport}` });
  }
  if (withTls && !accessLogOnly) targets.push(...tlsTargets);

  for (const kind of ['GET', 'POST 1KB']) {
    for (const t of targets) load(`${t.url}/`, kind !== 'GET'); // warm-up
    for (let round = 0; round < rounds; round++) {
      // Every other round in reverse order, so no target always runs right after the same one.
      for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
        const pid = cpuPids.get(t.name);
        const t0 = pid ? cpuTicks(pid) : 0;
        const r = load(`${t.url}/`, kind !== 'GET');
        if (pid && r.requests > 0) {
          const key = `${kind} ${t.name}`;
          cpuPerRequest.set(key, [...(cpuPerRequest.get(key) ?? []), ((cpuTicks(pid) - t0) * 10_000) / r.requests]);
        }
        roundRps.set(`${kind} ${t.name}`, [...(roundRps.get(`${kind} ${t.name}`) ?? []), r.rps]);
        process.stderr.write(`${kind} ${t.name} round ${round + 1}: ${r.rps.toFixed(0)} req/s${r.errors ? `, ${r.errors} errors` : ''}\n`);
        if (r.errors) await sampleError(t.url);
        record(kind, t.name, r);
      }
    }
  }
  if (withTls && !accessLogOnly && spawnSync('which', ['h2load']).status === 0) {
    for (let round = 0; round < rounds; round++) {
      for (const t of tlsTargets) {
        const r = h2load(`${t.url}/`, { duration, clients: Math.max(1, Math.round(connections / 10)), streams: 10 });
        process.stderr.write(`h2 ${t.name} round ${round + 1}: ${r.rps.toFixed(0)} req/s\n`);
        const list = h2rounds.get(t.name) ?? [];
        list.push(r);
        h2rounds.set(t.name, list);
        const mid = [...list].sort((a, b) => a.rps - b.rps)[Math.floor(list.length / 2)];
        const prev = h2results.find((x) => x.name === t.name);
        if (!prev) h2results.push({ name: t.name, ...mid });
        else Object.assign(prev, mid);
      }
    }
  }
  if (multicore && !tlsOnly && !accessLogOnly) {
    // Every process on CPUs 0 and 1 (wrk with two threads as well): what a second worker buys
    // when the load generator competes for the same cores. A second upstream on both CPUs, so
    // the one-CPU upstream above is not the ceiling; the extra boosters serve as standbys.
    const mcUpPort = await freePort();
    const mcUpstream = `http://127.0.0.1:${mcUpPort}`;
    const mcTargets: { name: string; url: string }[] = [];
    const mcBoosters: { name: string; workers: string; port: number }[] = [
      { name: 'booster-1-worker', workers: '1', port: await freePort() },
      { name: 'booster-2-workers', workers: '2', port: await freePort() },
    ];
    const mcUp = await startPinned(
      '0,1',
      process.execPath,
      tsxArgs('bench/booster-upstream.ts'),
      { PORT: String(mcUpPort), BOOSTERS: mcBoosters.map((b) => `http://127.0.0.1:${b.port}`).join(','), NODE_ID: 'bench-up-mc' },
      /LISTENING/,
    );
    children.push({ kill: () => stop(mcUp.child) });
    for (const b of mcBoosters) {
      const child = startBoosterProcess('0,1', {
        OMFLOW_DB_URL: pg.url,
        OMFLOW_NODE_ID: `bench-${b.name}`,
        OMFLOW_BOOSTER_PORT: String(b.port),
        OMFLOW_BOOSTER_SLOW_START_MS: '0',
        OMFLOW_BOOSTER_STANDBY_SERVES: 'true',
        OMFLOW_BOOSTER_WORKERS: b.workers,
      });
      children.push({ kill: () => stop(child) });
      const url = `http://127.0.0.1:${b.port}`;
      await waitFor(async () => {
        const st = (await (await statusGet(url)).json()) as { servers: { id: string; state: string }[] };
        return st.servers.some((x) => x.id === 'bench-up-mc' && x.state === 'up');
      }, `${b.name} with its upstream up`);
      // Only the multi-core upstream: the one-CPU upstream heartbeats to the first boosters only.
      mcTargets.push({ name: b.name, url });
    }
    const hport = await freePort();
    const hconf = join(dir, 'haproxy-2t.cfg');
    writeFileSync(
      hconf,
      `global\n  nbthread 2\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 30s\n  timeout server 30s\n  option http-keep-alive\n  http-reuse always\nfrontend fe\n  bind 127.0.0.1:${hport}\n  default_backend be\nbackend be\n  server s1 127.0.0.1:${mcUpPort}\n`,
    );
    if (spawnSync('which', ['haproxy']).status === 0) {
      const h = await startPinned('0,1', 'haproxy', ['-f', hconf, '-db'], {});
      children.push({ kill: () => stop(h.child) });
      await waitFor(async () => (await fetch(`http://127.0.0.1:${hport}/`)).ok, 'haproxy 2 threads');
      mcTargets.push({ name: 'haproxy-2-threads', url: `http://127.0.0.1:${hport}` });
    }
    mcTargets.unshift({ name: 'direct', url: mcUpstream });
    for (const kind of ['GET', 'POST 1KB']) {
      for (const t of mcTargets) load(`${t.url}/`, kind !== 'GET', '0,1', 2); // warm-up
      for (let round = 0; round < rounds; round++) {
        for (const t of mcTargets) {
          const r = load(`${t.url}/`, kind !== 'GET', '0,1', 2);
          process.stderr.write(`2 cores ${kind} ${t.name} round ${round + 1}: ${r.rps.toFixed(0)} req/s\n`);
          record(`2cores ${kind}`, t.name, r);
        }
      }
    }
    for (const r of results.filter((x) => x.kind.startsWith('2cores '))) multiResults.push(r);
  }
  // The access log really wrote: one line per request it served (the warm-up's included).
  const wc = spawnSync('wc', ['-l', accessLogFile], { encoding: 'utf8' });
  accessLogLines = Number(wc.stdout.trim().split(/\s+/)[0]) || 0;
} finally {
  for (const c of children.reverse()) await c.kill();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}

console.log(`\nbooster-throughput: wrk -t1 -c${connections} -d${duration}s on CPU 0; proxies + upstream on CPU 1; median of ${rounds} interleaved rounds\n`);
console.log('kind      target               req/s    x direct   p50 ms   p99 ms   errors');
for (const kind of ['GET', 'POST 1KB']) {
  if (!results.some((r) => r.kind === kind)) continue;
  const direct = results.find((r) => r.kind === kind && r.name === 'direct')!;
  for (const r of results.filter((x) => x.kind === kind)) {
    console.log(
      `${kind.padEnd(9)} ${r.name.padEnd(19)} ${r.rps.toFixed(0).padStart(7)}   ${(r.rps / direct.rps).toFixed(2).padStart(6)}   ${r.p50.toFixed(2).padStart(6)}   ${r.p99.toFixed(2).padStart(6)}   ${r.errors}`,
    );
  }
  const get = (n: string) => results.find((r) => r.kind === kind && r.name === n);
  const b = get('booster')!;
  const fr = get('fastify-reply-from');
  const ha = get('haproxy');
  const nh = get('booster-node-http');
  if (nh) console.log(`  booster (lean HTTP/1.1) / booster with OMFLOW_BOOSTER_LEAN_HTTP1=false = ${(b.rps / nh.rps).toFixed(2)}`);
  const al = get('booster-access-log');
  if (al) {
    const off = roundRps.get(`${kind} booster`) ?? [];
    /** The share of req/s lost with the log on, paired within each round. */
    const paired = (target: string) => {
      const on = roundRps.get(`${kind} ${target}`) ?? [];
      const p = off.map((x, i) => 1 - on[i] / x);
      return `${(median(p) * 100).toFixed(1)} % fewer req/s (median; rounds ${p.map((x) => `${(x * 100).toFixed(1)}`).join(' / ')} %)`;
    };
    console.log(`  access log, paired within each round: ${paired('booster-access-log')}`);
    const bl = accessLogOnly ? get('booster-baseline') : undefined;
    if (bl)
      console.log(
        `  the --baseline checkout with its access log on: ${bl.rps.toFixed(0)} req/s = ${((1 - bl.rps / b.rps) * 100).toFixed(1)} % fewer; paired ${paired('booster-baseline')}; CPU per request ${median(cpuPerRequest.get(`${kind} booster-baseline`) ?? [Number.NaN]).toFixed(1)} µs`,
      );
    console.log(
      `  access log (${accessLogLines} lines written in the whole run): booster ${b.rps.toFixed(0)} req/s with it off, ${al.rps.toFixed(0)} req/s with it on (JSON, every request, to a file) = ${((1 - al.rps / b.rps) * 100).toFixed(1)} % fewer (goal <= 5 %); p99 ${b.p99.toFixed(2)} / ${al.p99.toFixed(2)} ms; booster CPU per request ${median(cpuPerRequest.get(`${kind} booster`) ?? [Number.NaN]).toFixed(1)} / ${median(cpuPerRequest.get(`${kind} booster-access-log`) ?? [Number.NaN]).toFixed(1)} µs`,
    );
  }
  console.log(
    `  booster / fastify-reply-from = ${fr ? (b.rps / fr.rps).toFixed(2) : 'n/a'} (goal >= 1.5); booster / haproxy = ${ha ? (b.rps / ha.rps).toFixed(2) : 'n/a'} (goal >= 0.5); p99 booster / haproxy = ${ha ? (b.p99 / ha.p99).toFixed(2) : 'n/a'} (goal <= 2)`,
  );
  const bt = get('booster-tls');
  const ht = get('haproxy-tls');
  if (!withTls) {
    console.log('');
    continue;
  }
  console.log(
    `  HTTPS keep-alive: booster-tls / haproxy-tls = ${bt && ht ? (bt.rps / ht.rps).toFixed(2) : 'n/a'}; p99 = ${bt && ht ? (bt.p99 / ht.p99).toFixed(2) : 'n/a'}; booster-tls / booster (TLS cost) = ${bt ? (bt.rps / b.rps).toFixed(2) : 'n/a'}\n`,
  );
}
if (h2results.length) {
  const clients = Math.max(1, Math.round(connections / 10));
  console.log(`h2 (h2load -c${clients} -m10 -D${duration} on CPU 0)`);
  for (const r of h2results)
    console.log(`h2        ${r.name.padEnd(19)} ${r.rps.toFixed(0).padStart(7)}   mean ${r.meanMs.toFixed(2)} ms   errors ${r.errors}`);
  const bh = h2results.find((r) => r.name === 'booster-tls');
  const hh = h2results.find((r) => r.name === 'haproxy-tls');
  console.log(
    `  h2: booster / haproxy = ${bh && hh ? (bh.rps / hh.rps).toFixed(2) : 'n/a'}; mean latency booster / haproxy = ${bh && hh ? (bh.meanMs / hh.meanMs).toFixed(2) : 'n/a'}`,
  );
}
if (multiResults.length) {
  console.log(
    `\nmulti-core: wrk -t2 -c${connections} -d${duration}s, boosters, HAProxy (nbthread 2) and the upstream all on CPUs 0,1; median of ${rounds} rounds`,
  );
  console.log('kind      target               req/s    x direct   p50 ms   p99 ms   errors');
  for (const kind of ['GET', 'POST 1KB']) {
    const rows = multiResults.filter((r) => r.kind === `2cores ${kind}`);
    const direct = rows.find((r) => r.name === 'direct');
    for (const r of rows)
      console.log(
        `${kind.padEnd(9)} ${r.name.padEnd(19)} ${r.rps.toFixed(0).padStart(7)}   ${direct ? (r.rps / direct.rps).toFixed(2).padStart(6) : '   n/a'}   ${r.p50.toFixed(2).padStart(6)}   ${r.p99.toFixed(2).padStart(6)}   ${r.errors}`,
      );
    const one = rows.find((r) => r.name === 'booster-1-worker');
    const two = rows.find((r) => r.name === 'booster-2-workers');
    const ha = rows.find((r) => r.name === 'haproxy-2-threads');
    console.log(
      `  2 workers / 1 worker = ${one && two ? (two.rps / one.rps).toFixed(2) : 'n/a'}; booster 2 workers / haproxy 2 threads = ${two && ha ? (two.rps / ha.rps).toFixed(2) : 'n/a'}; p99 = ${two && ha ? (two.p99 / ha.p99).toFixed(2) : 'n/a'}`,
    );
  }
}
