// bench/balance-quality: how well work is placed, side by side. The same app servers, each in a
// CPU-limited control group of its own, behind the Booster, HAProxy (leastconn and roundrobin) and
// nginx (least_conn), in one run. Load is open-loop (fixed arrivals: slow answers cannot slow the
// load; latency counts from each request's scheduled time) at shares of the cluster's measured
// capacity, plus a closed-loop maximum. Work: page GETs (/login) and ticket creation through the
// API (the demo flow, whose automatic steps the Booster dispatches whichever proxy carried the
// request). Scenarios: homogeneous servers; one 4 × slower; one degrading mid-run (its CPU limit cut
// 10 × at 10 s, restored at 20 s); one stalled for 2 s (SIGSTOP/SIGCONT), repeated; one added
// mid-run (slow start).
// Prints per scenario, work, load and proxy: achieved rate, p50/p99/p99.9, errors, each server's
// share of requests; for the degrading server, the seconds until its share falls to its capacity
// share and comes back; then the ratios the goals of issue 22 name (median over --runs).
// Usage: npx tsx bench/balance-quality.ts [--runs 3] [--seconds 15] [--quota 0.1] [--booster-env K=V,…]
//   [--scenarios homogeneous,slow,degrading,stall,added] [--work page,tickets]
//   [--loads max,50,80,95] [--dynamic-loads 80] [--proxies booster,haproxy-leastconn,haproxy-roundrobin,nginx]
//   [--diagnose] (per cell: requests each server answered against the client's, new upstream connections, the
//   servers' user/system CPU and context switches per answer, answers per second, the booster's view of each server)
//   [--perf DIR] (perf record of the first server in each cell, JIT frames named) [--rotate N] (start the proxy order N later)
// Needs root (control groups), haproxy and nginx on PATH; refuses without the cgroup cpu controller.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { audienceOf, signClusterRequest } from '../common/protocol/cluster-auth.js';
import { cpuTicks, freePort, ROOT, SECRET, startBoosterProcess, startEmbeddedPostgres, statusGet, stop, waitFor } from './booster-lib.js';
import { CpuGroup, cpuControllerLayout } from './cpu-groups.js';
import { benchAuthHeaders, prepareTicketBenchDb } from './ticket-bench-db.js';

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
const list = (name: string, dflt: string) => (flag(name) ?? dflt).split(',').filter(Boolean);
const RUNS = Number(flag('runs') ?? 3);
const SECONDS = Number(flag('seconds') ?? 15);
const QUOTA = Number(flag('quota') ?? 0.1);
const SCENARIOS = list('scenarios', 'homogeneous,slow,degrading,stall,added') as ScenarioName[];
const WORK = list('work', 'page,tickets') as Work[];
const LOADS = list('loads', 'max,50,80,95');
const DYNAMIC_LOADS = list('dynamic-loads', '80');
const PROXIES = list('proxies', 'booster,haproxy-leastconn,haproxy-roundrobin,nginx');
/** Extra booster settings for experiments: --booster-env OMFLOW_BOOSTER_X=1,OMFLOW_BOOSTER_Y=2 */
const BOOSTER_ENV = Object.fromEntries(list('booster-env', '').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
const CLOSED_CONNECTIONS = 32;
const WARMUP_S = 3;
const FORM = 'it-request';
/** Per cell, what the servers saw: requests they answered, upstream connections opened, the booster's view of them. */
const DIAGNOSE = args.includes('--diagnose');
const PERF_DIR = flag('perf');
let perfSeq = 0;
const OPERATOR_TOKEN = 'bench-operator-token-0123456789abcdef';

type ScenarioName = 'homogeneous' | 'slow' | 'degrading' | 'stall' | 'added';
type Work = 'page' | 'tickets';

const layout = cpuControllerLayout();
if ('error' in layout) {
  console.error(`balance-quality: refusing to run: ${layout.error}`);
  process.exit(2);
}
for (const tool of ['haproxy', 'nginx'])
  if (PROXIES.some((p) => p.startsWith(tool)) && spawnSync('which', [tool]).status !== 0) {
    console.error(`balance-quality: ${tool} is not installed (apt-get install ${tool}), or leave it out with --proxies`);
    process.exit(2);
  }

/** One scenario: each server's CPU share, and what happens during a run (times in s from its start). */
interface Scenario {
  seconds: number;
  quotas: number[];
  /** Server 3 starts only at this time (added mid-run). */
  lateStartAt?: number;
  events: { at: number; what: string; run(s: AppServer[]): void }[];
  /** The degrading server and when its capacity changes: for the share-follows-capacity figure. */
  degrade?: { server: number; cutAt: number; restoreAt: number; factor: number };
}

function scenario(name: ScenarioName): Scenario {
  const q = QUOTA;
  switch (name) {
    case 'homogeneous':
      return { seconds: SECONDS, quotas: [q, q, q], events: [] };
    case 'slow':
      return { seconds: SECONDS, quotas: [q, q, q / 4], events: [] };
    case 'degrading':
      return {
        seconds: 30,
        quotas: [q, q, q],
        degrade: { server: 2, cutAt: 10, restoreAt: 20, factor: 10 },
        events: [
          { at: 10, what: 's3 limit cut 10 ×', run: (s) => s[2].group.setQuota(q / 10) },
          { at: 20, what: 's3 limit restored', run: (s) => s[2].group.setQuota(q) },
        ],
      };
    case 'stall': {
      const events: Scenario['events'] = [];
      for (let at = 3; at + 2 <= 20; at += 6) {
        events.push({ at, what: 's3 SIGSTOP', run: (s) => s[2].group.signal('SIGSTOP') });
        events.push({ at: at + 2, what: 's3 SIGCONT', run: (s) => s[2].group.signal('SIGCONT') });
      }
      return { seconds: 20, quotas: [q, q, q], events };
    }
    case 'added':
      return { seconds: 20, quotas: [q, q, q], lateStartAt: 5, events: [] };
  }
}

// ---------------------------------------------------------------- the cluster

interface AppServer {
  id: string;
  port: number;
  group: CpuGroup;
  child: ChildProcess | null;
  /** Warmed since it started (a server added mid-run is not, until the next scenario warms it). */
  warm: boolean;
}

const dir = mkdtempSync(join(tmpdir(), 'omflow-balance-'));
const pg = await startEmbeddedPostgres(['-c', 'max_connections=300']);
const db = await prepareTicketBenchDb(pg.url, FORM);
const boosterPort = await freePort();
const boosterUrl = `http://127.0.0.1:${boosterPort}`;
const children: ChildProcess[] = [];
const servers: AppServer[] = [];
const groups: CpuGroup[] = [];
/** Set once the proxies are up: the server warm-up goes through them. */
let proxies: Proxy[] = [];
let auth: Record<string, string> = {};

/** An app server inside its group from its first instruction (its shell joins, then execs node). */
function startServer(s: AppServer): void {
  s.warm = false;
  const cmd = `echo $$ > ${s.group.procsFile} && exec ${process.execPath} ${PERF_DIR ? '--perf-basic-prof ' : ''}${join(ROOT, 'common/bin/omflow.mjs')} server`;
  s.child = spawn('sh', ['-c', cmd], {
    env: {
      PATH: process.env.PATH,
      OMFLOW_DB_URL: pg.url,
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_NODE_ID: s.id,
      OMFLOW_LOG_LEVEL: 'warn',
      OMFLOW_SERVER_HOST: '127.0.0.1',
      OMFLOW_SERVER_PORT: String(s.port),
      OMFLOW_DB_POOL_MAX: '10',
      OMFLOW_SERVER_OPERATOR_TOKEN: OPERATOR_TOKEN,
      BOOSTER_IP: '127.0.0.1',
      BOOSTER_PORT: String(boosterPort),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

async function stopServer(s: AppServer): Promise<void> {
  s.group.setQuota(Number.POSITIVE_INFINITY);
  s.group.signal('SIGCONT');
  await stop(s.child ?? undefined);
  s.child = null;
}

async function serverAnswers(s: AppServer): Promise<boolean> {
  return fetch(`http://127.0.0.1:${s.port}/healthz`).then(
    (r) => r.ok,
    () => false,
  );
}

const boosterUp = async () =>
  ((await (await statusGet(boosterUrl)).json()) as { servers: { id: string; state: string }[] }).servers.filter((s) => s.state === 'up').map((s) => s.id);

// ---------------------------------------------------------------- the proxies

interface Proxy {
  name: string;
  url: string;
  /** The answering server from a response's headers. */
  serverOf(headers: Record<string, string | string[] | undefined>): string | null;
}

function startProcess(cmd: string, a: string[], cpus = '1'): ChildProcess {
  const c = spawn('taskset', ['-c', cpus, cmd, ...a], { stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(c);
  return c;
}

async function startProxies(): Promise<Proxy[]> {
  const out: Proxy[] = [];
  const header = (h: Record<string, string | string[] | undefined>, name: string) => {
    const v = h[name];
    return typeof v === 'string' ? v : null;
  };
  if (PROXIES.includes('booster')) out.push({ name: 'booster', url: boosterUrl, serverOf: (h) => header(h, 'x-booster-upstream') });
  const byPort = new Map(servers.map((s) => [String(s.port), s.id]));
  for (const algo of ['leastconn', 'roundrobin'] as const) {
    if (!PROXIES.includes(`haproxy-${algo}`)) continue;
    const port = await freePort();
    const conf = join(dir, `haproxy-${algo}.cfg`);
    // What an operator would write: the Booster's own health settings (1 s, 200 ms while changing,
    // 500 ms timeout, fall 2, rise 2, slow start 10 s), redispatch on a failed connect.
    writeFileSync(
      conf,
      `global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout queue 5s
  timeout check 500ms
  option http-keep-alive
  option redispatch
  retries 2
  http-reuse safe
frontend fe
  bind 127.0.0.1:${port}
  default_backend app
backend app
  balance ${algo}
  option httpchk GET /healthz
  http-check expect status 200
  http-response set-header X-Upstream %s
  default-server inter 1s fastinter 200ms downinter 1s fall 2 rise 2 slowstart 10s
${servers.map((s) => `  server ${s.id} 127.0.0.1:${s.port} check`).join('\n')}
`,
    );
    startProcess('haproxy', ['-f', conf, '-db']);
    out.push({ name: `haproxy-${algo}`, url: `http://127.0.0.1:${port}`, serverOf: (h) => header(h, 'x-upstream') });
  }
  if (PROXIES.includes('nginx')) {
    const port = await freePort();
    const conf = join(dir, 'nginx.conf');
    // nginx without NGINX Plus: passive health only (max_fails, fail_timeout), no slow start.
    writeFileSync(
      conf,
      `daemon off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/nginx.err warn;
events { worker_connections 8192; }
http { access_log off;
  upstream app { least_conn;
${servers.map((s) => `    server 127.0.0.1:${s.port} max_fails=2 fail_timeout=5s;`).join('\n')}
    keepalive 256; }
  server { listen 127.0.0.1:${port}; client_body_buffer_size 64k;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_connect_timeout 2s; proxy_read_timeout 60s;
      proxy_next_upstream error timeout http_502 http_503; add_header X-Upstream $upstream_addr always; } } }
`,
    );
    startProcess('nginx', ['-c', conf, '-p', dir]);
    // $upstream_addr lists every server tried ("a, b"): the last one answered.
    out.push({
      name: 'nginx',
      url: `http://127.0.0.1:${port}`,
      serverOf: (h) => byPort.get(header(h, 'x-upstream')?.split(',').at(-1)?.trim().split(':').at(-1) ?? '') ?? null,
    });
  }
  for (const p of out) await waitFor(async () => (await fetch(`${p.url}/login`)).ok, `${p.name} answers`, 60_000);
  return out;
}

// ---------------------------------------------------------------- load

interface Answer {
  /** ms after the run's start the request was scheduled (open loop) or sent (closed loop). */
  at: number;
  ms: number;
  ok: boolean;
  server: string | null;
  /** Status and code of a failure (or the client error). */
  failure: string | null;
  ticketNo?: string;
}

interface Load {
  kind: 'closed' | 'open';
  /** open: arrivals per second. */
  rate?: number;
}

/** What one request is, for a kind of work; `n` makes every ticket's title unique. */
function requestFor(work: Work, auth: Record<string, string>, n: number) {
  if (work === 'page') return { path: '/login', method: 'GET' as const, headers: {}, okStatus: 200 };
  return {
    path: `/api/forms/${FORM}/tickets`,
    method: 'POST' as const,
    headers: auth,
    body: JSON.stringify({ data: { title: `bq-${n}`, category: 'software', amount: n % 200_000 } }),
    okStatus: 201,
  };
}

let requestSeq = 0;

async function drive(proxy: Proxy, work: Work, auth: Record<string, string>, load: Load, seconds: number, onTick?: (s: number) => void): Promise<Answer[]> {
  const pool = new Pool(proxy.url, { connections: load.kind === 'closed' ? CLOSED_CONNECTIONS : 512, pipelining: 1 });
  const answers: Answer[] = [];
  const t0 = performance.now();
  const one = async (at: number) => {
    const r = requestFor(work, auth, ++requestSeq);
    try {
      const res = await pool.request({ path: r.path, method: r.method, headers: r.headers, body: r.body, headersTimeout: 60_000, bodyTimeout: 60_000 });
      const text = await res.body.text();
      const ms = performance.now() - t0 - at;
      const ok = res.statusCode === r.okStatus;
      let failure: string | null = null;
      let ticketNo: string | undefined;
      if (!ok) {
        let code = '';
        try {
          code = (JSON.parse(text) as { code?: string }).code ?? '';
        } catch {
          // not JSON
        }
        failure = `${res.statusCode}${code ? ` ${code}` : ''}`;
      } else if (work === 'tickets') ticketNo = (JSON.parse(text) as { number?: string }).number;
      answers.push({ at, ms, ok, server: proxy.serverOf(res.headers), failure, ticketNo });
    } catch (err) {
      answers.push({ at, ms: performance.now() - t0 - at, ok: false, server: null, failure: (err as { code?: string }).code ?? String(err) });
    }
  };
  const inflight = new Set<Promise<void>>();
  let second = -1;
  const tick = () => {
    const s = Math.floor((performance.now() - t0) / 1000);
    if (s !== second) {
      second = s;
      onTick?.(s);
    }
  };
  const end = t0 + seconds * 1000;
  if (load.kind === 'closed') {
    const timer = setInterval(tick, 50);
    await Promise.all(
      Array.from({ length: CLOSED_CONNECTIONS }, async () => {
        while (performance.now() < end) await one(performance.now() - t0);
      }),
    );
    clearInterval(timer);
  } else {
    // A 2 ms tick sends every arrival whose time has come (a timer per arrival would drift).
    const rate = load.rate!;
    const total = Math.round(rate * seconds);
    let sent = 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        tick();
        const now = performance.now();
        while (sent < total && t0 + (sent * 1000) / rate <= now) {
          const p = one((sent * 1000) / rate);
          inflight.add(p);
          void p.finally(() => inflight.delete(p));
          sent++;
        }
        if (sent >= total) {
          clearInterval(timer);
          resolve();
        }
      }, 2);
    });
    await Promise.all(inflight);
  }
  await pool.close();
  return answers;
}

// ---------------------------------------------------------------- figures

const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : Number.NaN);
const median = (xs: number[]) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : Number.NaN;
};

interface Figures {
  rate: number;
  p50: number;
  p99: number;
  p999: number;
  errors: number;
  shares: Record<string, number>;
  /** Degrading scenario: s from the cut until the server's share is at most 1.5 × its capacity share, and from the restore until it is back to 0.75 × its share. */
  fallS?: number;
  recoverS?: number;
  failures: Record<string, number>;
  /** The app servers' CPU per answered request (µs): what a proxy costs the servers behind it. */
  serverCpuUs: number;
}

function figures(answers: Answer[], seconds: number, sc: Scenario, serverTicks: number): Figures {
  const ok = answers
    .filter((a) => a.ok)
    .map((a) => a.ms)
    .sort((a, b) => a - b);
  const counts: Record<string, number> = {};
  const failures: Record<string, number> = {};
  for (const a of answers) {
    if (a.server) counts[a.server] = (counts[a.server] ?? 0) + 1;
    if (!a.ok) failures[a.failure ?? '?'] = (failures[a.failure ?? '?'] ?? 0) + 1;
  }
  const total = Object.values(counts).reduce((n, x) => n + x, 0) || 1;
  const shares: Record<string, number> = {};
  for (const s of servers) shares[s.id] = (counts[s.id] ?? 0) / total;
  const f: Figures = {
    rate: ok.length / seconds,
    p50: pct(ok, 0.5),
    p99: pct(ok, 0.99),
    p999: pct(ok, 0.999),
    errors: answers.length - ok.length,
    shares,
    failures,
    serverCpuUs: (serverTicks * 10_000) / Math.max(1, answers.length),
  };
  if (sc.degrade) {
    const d = sc.degrade;
    const id = servers[d.server].id;
    const q = sc.quotas;
    const cutShare = q[d.server] / d.factor / (q.reduce((a, x) => a + x, 0) - q[d.server] + q[d.server] / d.factor);
    const fullShare = q[d.server] / q.reduce((a, x) => a + x, 0);
    const windowMs = 250;
    /** The server's share of answers sent in each 250 ms window from `fromS`. */
    const shareAt = (fromMs: number, toMs: number) => {
      const w = answers.filter((a) => a.at >= fromMs && a.at < toMs && a.server);
      return w.length ? w.filter((a) => a.server === id).length / w.length : Number.NaN;
    };
    const firstWindow = (fromS: number, untilS: number, good: (share: number) => boolean) => {
      for (let t = fromS * 1000; t + windowMs <= untilS * 1000; t += windowMs) if (good(shareAt(t, t + windowMs))) return (t + windowMs) / 1000 - fromS;
      return Number.NaN;
    };
    f.fallS = firstWindow(d.cutAt, d.restoreAt, (s) => s <= 1.5 * cutShare);
    f.recoverS = firstWindow(d.restoreAt, sc.seconds, (s) => s >= 0.75 * fullShare);
  }
  return f;
}

// ---------------------------------------------------------------- diagnosis (--diagnose)

/** Requests each server answered (its own counter, every status class), by server id. */
async function answeredByServers(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const s of servers) {
    if (!s.child) continue;
    const text = await fetch(`http://127.0.0.1:${s.port}/_internal/metrics`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } }).then(
      (r) => r.text(),
      () => '',
    );
    out[s.id] = 0;
    for (const m of text.matchAll(/^omflow_server_requests_total\{[^}]*\} (\d+)/gm)) out[s.id] += Number(m[1]);
  }
  return out;
}

/** User and system CPU ticks of the app servers, and their context switches (voluntary, involuntary). */
function serverCpuSplit(): number[] {
  const out = [0, 0, 0, 0];
  for (const s of servers)
    for (const pid of s.group.pids()) {
      try {
        const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
        out[0] += Number(f[11]);
        out[1] += Number(f[12]);
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        out[2] += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
        out[3] += Number(/^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
      } catch {
        // exited meanwhile
      }
    }
  return out;
}

/** A booster metric's total over its labels. */
async function boosterMetric(name: string): Promise<number> {
  const path = '/_booster/metrics';
  const text = await fetch(boosterUrl + path, {
    headers: signClusterRequest(SECRET, 'bench', 'GET', path, '', Date.now(), { audience: audienceOf(boosterUrl) }),
  }).then(
    (r) => r.text(),
    () => '',
  );
  let n = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)`, 'gm'))) n += Number(m[1]);
  return n;
}

/**
 * Samples, every 100 ms while a cell runs: the TCP connections to the servers' ports (ss; a
 * connection seen in no earlier sample is a new one, TIME-WAIT included, so short ones count too)
 * and the booster's view of each server (state, concurrency limit, in flight).
 */
function startSampler() {
  const ports = new Set(servers.map((s) => String(s.port)));
  const seen = new Set<string>();
  let baseline: Set<string> | null = null;
  const notUp: Record<string, number> = {};
  const limits: Record<string, number[]> = {};
  const baselines: Record<string, number[]> = {};
  let samples = 0;
  let busy = false;
  const sampleConnections = () =>
    new Promise<void>((resolve) => {
      const c = spawn('ss', ['-tanH'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      c.stdout!.on('data', (d) => (out += d));
      c.on('close', () => {
        const now = new Set<string>();
        for (const line of out.split('\n')) {
          const f = line.trim().split(/\s+/);
          if (f.length < 5) continue;
          const [local, peer] = [f[3], f[4]];
          // The server side of a connection: its local port is a server's.
          if (ports.has(local.slice(local.lastIndexOf(':') + 1))) now.add(`${local}|${peer}`);
          else if (ports.has(peer.slice(peer.lastIndexOf(':') + 1))) now.add(`${peer}|${local}`);
        }
        if (baseline === null) baseline = now;
        else for (const k of now) if (!baseline.has(k)) seen.add(k);
        resolve();
      });
    });
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    samples++;
    const st = PROXIES.includes('booster')
      ? await statusGet(boosterUrl)
          .then((r) => r.json() as Promise<{ servers: { id: string; state: string; concurrencyLimit: number | null; noLoadMs: number | null }[] }>)
          .catch(() => null)
      : null;
    for (const s of st?.servers ?? []) {
      if (s.state !== 'up') notUp[s.id] = (notUp[s.id] ?? 0) + 1;
      if (s.concurrencyLimit !== null) (limits[s.id] ??= []).push(s.concurrencyLimit);
      if (s.noLoadMs !== null) (baselines[s.id] ??= []).push(s.noLoadMs);
    }
    await sampleConnections();
    busy = false;
  }, 100);
  void sampleConnections();
  return {
    stop() {
      clearInterval(timer);
      const newConns: Record<string, number> = {};
      for (const k of seen) {
        const port = k.slice(k.indexOf(':') + 1, k.indexOf('|'));
        const id = servers.find((s) => String(s.port) === port)?.id ?? port;
        newConns[id] = (newConns[id] ?? 0) + 1;
      }
      const byServer = (m: Record<string, number[]>) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, median(v)]));
      return { samples, newConns, notUp, limits: byServer(limits), baselines: byServer(baselines) };
    },
  };
}

// ---------------------------------------------------------------- one cell

async function tickets(): Promise<number> {
  return Number((await db.knex('tickets').count({ n: '*' }).first())!.n);
}

async function stepsDrained(): Promise<void> {
  await waitFor(
    async () => Number((await db.knex('steps').whereIn('state', ['ready', 'assigned', 'running']).count({ n: '*' }).first())!.n) === 0,
    'steps drained',
    300_000,
  );
}

/** Every acknowledged ticket exists exactly once. */
async function ticketCheck(answers: Answer[]): Promise<{ acknowledged: number; lost: number; duplicated: number }> {
  const acked = answers.filter((a) => a.ok && a.ticketNo).map((a) => a.ticketNo!);
  let lost = 0;
  let duplicated = 0;
  for (let i = 0; i < acked.length; i += 500) {
    const chunk = acked.slice(i, i + 500);
    const rows = (await db.knex('tickets').whereIn('ticket_no', chunk).select('ticket_no').count({ n: '*' }).groupBy('ticket_no')) as {
      ticket_no: string;
      n: number | string;
    }[];
    const found = new Map(rows.map((r) => [r.ticket_no, Number(r.n)]));
    for (const no of chunk) {
      const n = found.get(no) ?? 0;
      if (n === 0) lost++;
      if (n > 1) duplicated++;
    }
  }
  return { acknowledged: acked.length, lost, duplicated };
}

/** CPU ticks of one app server's processes. */
function groupTicks(s: AppServer): number {
  let n = 0;
  for (const pid of s.group.pids()) n += cpuTicks(pid);
  return n;
}

/** CPU ticks of every app server process (a server started or stopped mid-cell counts what it ran here). */
function serverCpuTicks(): number {
  return servers.reduce((n, s) => n + groupTicks(s), 0);
}

const WARM_WINDOW_S = 2;
/** Limited, the first cell measured still paid for warming up after 2 s windows had settled: a cell's length of load per proxy. */
const THROTTLED_WARM_WINDOW_S = 10;
const WARM_MAX_ROUNDS = 10;
/** What a warm-up round must have of a server before its cost counts (a server a proxy has not routed to yet). */
const WARM_MIN_ANSWERS = 100;

/**
 * Load through every proxy in turn until each server's CPU per answer has settled (two rounds in a
 * row less than 10 % cheaper than the one before): first unlimited, then at QUOTA. A cold server spends
 * several times more per request while its hot paths compile, and keeps getting cheaper for tens of
 * seconds once limited (measured: 985, 486, 182 µs per answer in three 13 s cells in a row through
 * the same proxy); without this, the first proxy measured (the Booster, in the first run) met
 * colder servers than the others. Through the proxies, so every request shape a cell sends (each
 * proxy's headers) is compiled. Returns each round's figures.
 */
async function warmServers(): Promise<string> {
  const phases: string[] = [];
  for (const quota of [Number.POSITIVE_INFINITY, QUOTA]) {
    for (const s of servers) s.group.setQuota(quota);
    const rounds: number[][] = [];
    for (let round = 1; round <= WARM_MAX_ROUNDS; round++) {
      const ticks0 = servers.map((s) => (s.child ? groupTicks(s) : 0));
      const answered = new Map<string, number>();
      for (const p of proxies)
        for (const work of WORK)
          for (const a of await drive(p, work, auth, { kind: 'closed' }, Number.isFinite(quota) ? THROTTLED_WARM_WINDOW_S : WARM_WINDOW_S))
            if (a.ok && a.server) answered.set(a.server, (answered.get(a.server) ?? 0) + 1);
      const cost = servers.map((s, i) =>
        s.child && (answered.get(s.id) ?? 0) >= WARM_MIN_ANSWERS ? ((groupTicks(s) - ticks0[i]) * 10_000) / answered.get(s.id)! : Number.NaN,
      );
      rounds.push(cost);
      // Settled: two rounds in a row, each less than 10 % cheaper than the one before.
      const flat = (k: number) => servers.every((s, i) => !s.child || rounds[k][i] >= 0.9 * rounds[k - 1][i]);
      if (rounds.length >= 3 && flat(rounds.length - 1) && flat(rounds.length - 2)) break;
    }
    phases.push(`${Number.isFinite(quota) ? `at ${quota * 100} %` : 'unlimited'}: ${rounds.map((r) => r.map((c) => fmt(c)).join('/')).join(' → ')}`);
  }
  for (const s of servers) {
    s.group.setQuota(Number.POSITIVE_INFINITY);
    if (s.child) s.warm = true;
  }
  return phases.join('; ');
}

async function prepareServers(sc: Scenario): Promise<void> {
  for (const [i, s] of servers.entries()) {
    s.group.setQuota(Number.POSITIVE_INFINITY);
    s.group.signal('SIGCONT');
    const wanted = !(sc.lateStartAt !== undefined && i === 2);
    if (wanted && !s.child) startServer(s);
    if (!wanted && s.child) await stopServer(s);
  }
  const cold = servers.filter((s) => s.child && !s.warm);
  for (const s of servers) if (s.child) await waitFor(() => serverAnswers(s), `${s.id} answers`, 60_000);
  const expected = servers.filter((s) => s.child).map((s) => s.id);
  await waitFor(async () => (await boosterUp()).length === expected.length, `booster sees ${expected.join(', ')} up`, 60_000);
  // A server (re)started since the last warm-up is warmed like the first ones (one added mid-run stays cold within its cell, as it would be).
  if (cold.length) console.log(`  servers warmed again (${cold.map((s) => s.id).join(', ')}), µs CPU per answer by round, ${await warmServers()}`);
  for (const [i, s] of servers.entries()) s.group.setQuota(sc.quotas[i]);
}

async function cell(
  proxy: Proxy,
  work: Work,
  load: Load,
  sc: Scenario,
  auth: Record<string, string>,
): Promise<{ f: Figures; check?: Awaited<ReturnType<typeof ticketCheck>> }> {
  await prepareServers(sc);
  // Warm: every proxy has had traffic before it is measured (new connections, learnt limits).
  await drive(proxy, work, auth, { kind: 'closed' }, WARMUP_S);
  if (work === 'tickets') await stepsDrained();
  const fired = new Set<number>();
  const ticks0 = serverCpuTicks();
  const diag0 = DIAGNOSE ? { answered: await answeredByServers(), retries: await boosterMetric('omflow_booster_retries_total') } : null;
  const sampler = DIAGNOSE ? startSampler() : null;
  const split0 = DIAGNOSE ? serverCpuSplit() : [];
  const perf = PERF_DIR
    ? spawn(
        'perf',
        [
          'record',
          '-F',
          '997',
          '-g',
          '-o',
          `${PERF_DIR}/${proxy.name}-${load.kind}-${++perfSeq}.data`,
          '-p',
          String(servers[0].group.pids()[0]),
          '--',
          'sleep',
          String(sc.seconds - 2),
        ],
        { stdio: 'ignore' },
      )
    : null;
  const answers = await drive(proxy, work, auth, load, sc.seconds, (s) => {
    for (const [k, e] of sc.events.entries())
      if (!fired.has(k) && s >= e.at) {
        fired.add(k);
        e.run(servers);
      }
    if (sc.lateStartAt !== undefined && s >= sc.lateStartAt && !servers[2].child) startServer(servers[2]);
  });
  for (const s of servers) s.group.signal('SIGCONT');
  if (perf && perf.exitCode === null) await new Promise((r) => perf.once('exit', r));
  const f = figures(answers, sc.seconds, sc, serverCpuTicks() - ticks0);
  if (diag0 && sampler) {
    const seen = sampler.stop();
    const answered = await answeredByServers();
    const retries = (await boosterMetric('omflow_booster_retries_total')) - diag0.retries;
    const per = servers
      .filter((s) => answered[s.id] !== undefined)
      .map(
        (s) =>
          `${s.id}: answered ${answered[s.id] - (diag0.answered[s.id] ?? 0)} (client saw ${answers.filter((a) => a.server === s.id).length}), new conns ${seen.newConns[s.id] ?? 0}, not up ${seen.notUp[s.id] ?? 0}/${seen.samples}, limit ~${fmt(seen.limits[s.id])}, no-load ~${fmt(seen.baselines[s.id], 1)} ms`,
      )
      .join('; ');
    const split = serverCpuSplit().map((x, i) => x - split0[i]);
    const n = Math.max(1, answers.length);
    console.log(
      `    [diagnose] per answer: user ${fmt((split[0] * 10_000) / n)} µs, system ${fmt((split[1] * 10_000) / n)} µs, context switches ${fmt(split[2] / n, 2)} voluntary, ${fmt(split[3] / n, 2)} involuntary`,
    );
    const perSecond = Array.from({ length: sc.seconds }, (_, i) => answers.filter((a) => a.at >= i * 1000 && a.at < (i + 1) * 1000).length);
    console.log(`    [diagnose] per second ${perSecond.join(' ')}`);
    console.log(
      `    [diagnose] ${proxy.name} ${load.kind}${load.rate ? ` ${load.rate.toFixed(0)}/s` : ''}: client answers ${answers.length} (ok ${answers.filter((a) => a.ok).length}), server CPU ${f.serverCpuUs.toFixed(0)} µs/answer, booster retries ${retries}; ${per}`,
    );
  }
  if (work !== 'tickets') return { f };
  await stepsDrained();
  return { f, check: await ticketCheck(answers) };
}

// ---------------------------------------------------------------- main

/** Each run starts with another proxy, so none is always the first after a scenario change. */
const ROTATE = Number(flag('rotate') ?? 0);
const rotated = <T>(xs: T[], run: number) => xs.map((_, i) => xs[(i + run - 1 + ROTATE) % xs.length]);
const fmt = (v: number | undefined, d = 0) => (v === undefined || Number.isNaN(v) ? '-' : v.toFixed(d));

try {
  for (let i = 1; i <= 3; i++) {
    const group = new CpuGroup(layout, `omflow-bench-s${i}`);
    groups.push(group);
    servers.push({ id: `bq-s${i}`, port: await freePort(), group, child: null, warm: false });
  }
  children.push(
    startBoosterProcess('1', {
      OMFLOW_DB_URL: pg.url,
      OMFLOW_NODE_ID: 'bq-booster',
      OMFLOW_BOOSTER_PORT: String(boosterPort),
      OMFLOW_BOOSTER_ADVERTISE_URL: boosterUrl,
      // Placement, not admission: no shedding under database pressure.
      OMFLOW_BOOSTER_DB_PRESSURE_MS: '0',
      OMFLOW_LOG_LEVEL: 'error',
      ...BOOSTER_ENV,
    }),
  );
  await waitFor(async () => (await fetch(`${boosterUrl}/_booster/active`)).status === 200, 'booster active');
  for (const s of servers) startServer(s);
  await waitFor(async () => (await boosterUp()).length === 3, 'three servers up', 60_000);
  proxies = await startProxies();
  const authPool = new Pool(boosterUrl);
  auth = await benchAuthHeaders(authPool);
  await authPool.close();
  const warmed = await warmServers();

  console.log(
    `balance-quality: 3 app servers in CPU groups (cgroup v${layout.version}), ${QUOTA * 100} % of a core each unless the scenario says otherwise; proxies on CPU 1 (one thread / worker each), load from this process; ${RUNS} run(s), medians shown; warm-up ${WARMUP_S} s closed-loop before each cell\n  servers warmed through every proxy until their CPU per answer settled, µs per answer of s1/s2/s3 by round, ${warmed}`,
  );
  type Row = { scenario: string; work: Work; load: string; proxy: string; runs: Figures[]; checks: Awaited<ReturnType<typeof ticketCheck>>[] };
  const rows: Row[] = [];
  const rowOf = (scenario: string, work: Work, load: string, proxy: string) => {
    let r = rows.find((x) => x.scenario === scenario && x.work === work && x.load === load && x.proxy === proxy);
    if (!r) rows.push((r = { scenario, work, load, proxy, runs: [], checks: [] }));
    return r;
  };
  const med = (r: Row, k: keyof Figures) => median(r.runs.map((f) => f[k] as number));
  const printRow = (r: Row) => {
    const shares = servers.map((s) => `${(100 * median(r.runs.map((f) => f.shares[s.id]))).toFixed(0)}`).join('/');
    const fails = r.runs.flatMap((f) => Object.entries(f.failures).map(([k, v]) => `${k}×${v}`));
    const deg = r.runs[0]?.fallS !== undefined ? `  share falls ${fmt(med(r, 'fallS'), 2)} s, back ${fmt(med(r, 'recoverS'), 2)} s` : '';
    const chk = r.checks.length
      ? `  tickets acked ${r.checks.reduce((n, c) => n + c.acknowledged, 0)} lost ${r.checks.reduce((n, c) => n + c.lost, 0)} dup ${r.checks.reduce((n, c) => n + c.duplicated, 0)}`
      : '';
    console.log(
      `  ${r.scenario.padEnd(11)} ${r.work.padEnd(7)} ${r.load.padEnd(8)} ${r.proxy.padEnd(19)} ${fmt(med(r, 'rate')).padStart(6)}/s  p50 ${fmt(med(r, 'p50'), 1).padStart(6)}  p99 ${fmt(med(r, 'p99'), 1).padStart(7)}  p99.9 ${fmt(med(r, 'p999'), 1).padStart(7)} ms  errors ${fmt(med(r, 'errors')).padStart(5)}  server CPU ${fmt(med(r, 'serverCpuUs')).padStart(4)} µs/req  shares ${shares} %${deg}${chk}${fails.length ? `  (${[...new Set(fails)].slice(0, 4).join(', ')})` : ''}`,
    );
  };

  for (const name of SCENARIOS) {
    const sc = scenario(name);
    const dynamic = name === 'degrading' || name === 'stall' || name === 'added';
    for (const work of WORK) {
      const loads = dynamic ? DYNAMIC_LOADS : LOADS;
      // Capacity: the closed-loop maximum of the static configuration, the best proxy's.
      let capacity = 0;
      for (let run = 1; run <= RUNS; run++) {
        const closedFirst = loads.includes('max') || capacity === 0;
        if (closedFirst) {
          const base = dynamic ? scenario('homogeneous') : sc;
          for (const p of rotated(proxies, run)) {
            const { f, check } = await cell(p, work, { kind: 'closed' }, { ...base, seconds: dynamic ? SECONDS : sc.seconds }, auth);
            const r = rowOf(name, work, 'max', p.name);
            r.runs.push(f);
            if (check) r.checks.push(check);
          }
          capacity = Math.max(...proxies.map((p) => med(rowOf(name, work, 'max', p.name), 'rate')));
        }
        for (const l of loads.filter((x) => x !== 'max')) {
          const rate = (capacity * Number(l)) / 100;
          for (const p of rotated(proxies, run)) {
            const { f, check } = await cell(p, work, { kind: 'open', rate }, sc, auth);
            const r = rowOf(name, work, `${l}%`, p.name);
            r.runs.push(f);
            if (check) r.checks.push(check);
          }
        }
        console.log(`${name} ${work}: run ${run} of ${RUNS} done (capacity ${capacity.toFixed(0)}/s)`);
      }
      for (const r of rows.filter((x) => x.scenario === name && x.work === work)) printRow(r);
      // The goals, per load: the Booster against HAProxy leastconn and nginx least_conn.
      for (const load of [...new Set(rows.filter((x) => x.scenario === name && x.work === work).map((x) => x.load))]) {
        const b = rows.find((x) => x.scenario === name && x.work === work && x.load === load && x.proxy === 'booster');
        if (!b) continue;
        const parts: string[] = [];
        for (const peer of ['haproxy-leastconn', 'nginx']) {
          const p = rows.find((x) => x.scenario === name && x.work === work && x.load === load && x.proxy === peer);
          if (!p) continue;
          parts.push(
            `vs ${peer}: rate ${fmt(med(b, 'rate') / med(p, 'rate'), 2)} p99 ${fmt(med(b, 'p99') / med(p, 'p99'), 2)} errors ${fmt(med(b, 'errors'))}/${fmt(med(p, 'errors'))}`,
          );
        }
        console.log(`  => ${name} ${work} ${load}: booster ${parts.join('; ')}`);
      }
    }
  }
  console.log(`tickets in the database at the end: ${await tickets()}`);
} finally {
  for (const s of servers) await stopServer(s).catch(() => {});
  for (const c of children.reverse()) await stop(c);
  for (const g of groups) g.remove();
  await db.destroy();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
