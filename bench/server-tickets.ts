// bench/server-tickets: tickets/s created directly on ONE app server (no booster), through the
// real API (POST /api/forms/it-request/tickets with a bearer token), with the server running the
// demo flow's automatic steps at the same time. Database: an embedded PostgreSQL (fsync off)
// unless --db URL is given (e.g. the MariaDB: mysql://omflow:omflow-ci@127.0.0.1:3307/<db>).
// --form simple: a form whose flow starts at a human step (creation alone, no automatic steps).
// --statements (embedded PostgreSQL only): pg_stat_statements on; prints the SQL statements per
// ticket (every statement the server ran, steps included, divided by tickets created).
// Prints the CPU the server process and the database used (cores) over the measured window, and
// when automatic steps were left queued, the sustained rate: tickets over the window plus the time
// their last steps took (a server that creates fast but leaves its steps behind is not faster).
// --baseline DIR: also runs the server of another checkout (e.g. /work/main) in alternating rounds
// (--rounds, default 2) against the same database, and prints the ratio: before/after in one run.
// --keyed: every creation carries a fresh Idempotency-Key.
// Usage: npx tsx bench/server-tickets.ts [--duration 10] [--connections 32] [--db URL] [--form it-request|simple] [--statements] [--pool-max 10] [--keyed] [--baseline DIR] [--rounds N]
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { freePort } from '../common/free-port.js';
import { cpuTicks, startEmbeddedPostgres } from './booster-lib.js';
import { benchAuthHeaders, prepareTicketBenchDb } from './ticket-bench-db.js';

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
const duration = Number(flag('duration') ?? 10);
const connections = Number(flag('connections') ?? 32);
const formKey = flag('form') === 'simple' ? 'bench-simple' : 'it-request';
const statements = args.includes('--statements');
const poolMax = flag('pool-max') ?? '10';

// An embedded PostgreSQL unless --db names another database (whose CPU is then not measured).
const pg = flag('db')
  ? null
  : await startEmbeddedPostgres(statements ? ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all'] : []);
const url = flag('db') ?? pg!.url;
const postmaster = pg?.postmaster ?? 0;
const db = await prepareTicketBenchDb(url, formKey);
const keyed = args.includes('--keyed');
const baseline = flag('baseline');
const rounds = Number(flag('rounds') ?? (baseline ? 2 : 1));

/** One measured cell: a server started from `root` (this tree or the baseline's), driven, stopped. */
async function cell(root: string, label: string): Promise<{ rate: number; sustained: number }> {
  const before = Number((await db.knex('tickets').count({ n: '*' }).first())!.n);
  const port = await freePort();
  // BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the server.
  const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), join(root, 'common/bin/omflow.mjs'), 'server'], {
    env: {
      PATH: process.env.PATH,
      OMFLOW_DB_URL: url,
      OMFLOW_CLUSTER_SECRET: 'bench-cluster-secret-0123456789',
      OMFLOW_NODE_ID: 'bench',
      OMFLOW_LOG_LEVEL: 'warn',
      OMFLOW_SERVER_PORT: String(port),
      OMFLOW_DB_POOL_MAX: poolMax,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('listening on')) resolve();
    });
    child.on('exit', () => reject(new Error('server exited')));
  });
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections });
  try {
    const headers = await benchAuthHeaders(pool);
    const latencies: number[] = [];
    let errors = 0;
    let i = 0;
    const run = async (until: number, record: boolean) => {
      await Promise.all(
        Array.from({ length: connections }, async () => {
          while (Date.now() < until) {
            const t0 = performance.now();
            const n = i++;
            const res = await pool.request({
              path: `/api/forms/${formKey}/tickets`,
              method: 'POST',
              headers: keyed ? { ...headers, 'idempotency-key': `${label}-${process.pid}-${before}-${n}` } : headers,
              body: JSON.stringify({ data: { title: `bench ${n}`, category: 'software', amount: n % 200_000 } }),
            });
            await res.body.text();
            if (!record) continue;
            if (res.statusCode === 201) latencies.push(performance.now() - t0);
            else errors++;
          }
        }),
      );
    };
    // Warm-up (JIT, pool) for 1 s, then measure.
    await run(Date.now() + 1000, false);
    if (statements) {
      await db.knex.raw('create extension if not exists pg_stat_statements');
      await db.knex.raw('select pg_stat_statements_reset()');
    }
    const counted0 = Number((await db.knex('tickets').count({ n: '*' }).first())!.n);
    const server0 = cpuTicks(child.pid!);
    const db0 = postmaster ? cpuTicks(postmaster, true) : 0;
    const started = Date.now();
    await run(started + duration * 1000, true);
    const seconds = (Date.now() - started) / 1000;
    const serverCores = (cpuTicks(child.pid!) - server0) / 100 / seconds;
    const dbCores = postmaster ? (cpuTicks(postmaster, true) - db0) / 100 / seconds : Number.NaN;
    // Let the automatic steps of the measured tickets finish so every statement they cause is counted.
    const pendingSteps = async () => Number((await db.knex('steps').whereIn('state', ['ready', 'assigned']).count({ n: '*' }).first())!.n);
    const backlog = await pendingSteps();
    const drainStart = Date.now();
    for (let w = 0; w < 600 && (await pendingSteps()) > 0; w++) await new Promise((r) => setTimeout(r, 100));
    const drainSeconds = (Date.now() - drainStart) / 1000;
    const counted = Number((await db.knex('tickets').count({ n: '*' }).first())!.n) - counted0;
    latencies.sort((a, b) => a - b);
    const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]?.toFixed(1);
    const total = Number((await db.knex('tickets').count({ n: '*' }).first())!.n) - before;
    const rate = latencies.length / seconds;
    console.log(
      `server-tickets [${label}]: ${rate.toFixed(0)} tickets/s created on one server, form ${formKey}${keyed ? ' (Idempotency-Key on each)' : ''} (${db.vendor}${pg ? ', embedded, fsync off' : ''}), ${connections} connections, ${seconds.toFixed(1)} s`,
    );
    console.log(
      `  latency p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms; errors ${errors}; tickets in database ${total} (incl. warm-up); steps still queued at the end ${backlog}`,
    );
    console.log(`  CPU: server ${serverCores.toFixed(2)} cores, database ${dbCores.toFixed(2)} cores (pool max ${poolMax})`);
    // Steps left queued are work still owed: tickets over the window plus the time to finish them.
    const sustained = latencies.length / (seconds + (backlog > 0 ? drainSeconds : 0));
    if (backlog > 0)
      console.log(
        `  sustained: ${sustained.toFixed(0)} tickets/s created and their automatic steps done (the last steps took ${drainSeconds.toFixed(1)} s more)`,
      );
    if (statements) {
      const where = 'dbid = (select oid from pg_database where datname = current_database())';
      const rows = (
        await db.knex.raw(
          `select calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) as q from pg_stat_statements where ${where} and toplevel order by calls desc limit 25`,
        )
      ).rows as { calls: number; q: string }[];
      const all = Number((await db.knex.raw(`select sum(calls) as n from pg_stat_statements where ${where} and toplevel`)).rows[0].n);
      console.log(
        `  statements per ticket (sent by clients, steps included, bench's own count queries too; ${counted} tickets): ${(all / Math.max(1, counted)).toFixed(1)}; the most frequent:`,
      );
      for (const r of rows) console.log(`  ${(Number(r.calls) / Math.max(1, counted)).toFixed(2).padStart(6)}  ${r.q}`);
    }
    return { rate, sustained };
  } finally {
    await pool.close();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

try {
  const here = fileURLToPath(new URL('..', import.meta.url));
  const cells: Record<string, { rate: number; sustained: number }[]> = { baseline: [], this: [] };
  for (let r = 0; r < rounds; r++) {
    if (baseline) cells.baseline.push(await cell(baseline, 'baseline'));
    cells.this.push(await cell(here, 'this'));
  }
  if (baseline) {
    const ratio = (k: 'rate' | 'sustained') => (cells.this.reduce((x, c) => x + c[k], 0) / cells.baseline.reduce((x, c) => x + c[k], 0)).toFixed(2);
    console.log(`ratio this / baseline (mean of ${rounds} alternating rounds): tickets/s created ${ratio('rate')}, sustained ${ratio('sustained')}`);
  }
} finally {
  await db.destroy();
  await pg?.stop();
}
