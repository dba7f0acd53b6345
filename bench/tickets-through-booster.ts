// bench/tickets-through-booster: tickets/s created through ONE booster in front of 1, 2 and 3 app
// servers, at each client count, through the real API (POST /api/forms/<form>/tickets, bearer
// token). Prints tickets/s, p50/p99 and the database's share of the machine's busy CPU (its
// processes' CPU time over all CPU time spent on the machine during the cell), so a run shows
// whether adding servers adds tickets or only queues them at the database.
// Database: an embedded PostgreSQL (fsync off) unless --db URL is given (e.g. the MariaDB:
// mysql://omflow:omflow-ci@127.0.0.1:3307/<db>, whose CPU is then not measured).
// --baseline DIR: for each server count, the same cells are also run with the app servers of
// another checkout (e.g. /work/main), its servers started just before this tree's: before/after in
// one run, against the same booster (this tree's, shedding off) and database.
// --warmup S (default 5): seconds of load per server before the first cell of each set of servers
// (3 servers: 15 s). New processes are cold (JIT tiers, pooled connections, the database's
// per-connection caches and prepared statements), and each of n servers gets 1/n of the load, so
// it warms n times slower: with 5 s for 3 servers, four cells in a row read 437, 522, 661, 708.
// Usage: npx tsx bench/tickets-through-booster.ts [--duration 5] [--warmup 5] [--clients 8,32] [--servers 1,2,3] [--db URL] [--form it-request|simple] [--baseline DIR]
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Pool } from 'undici';
import { cpuTicks, freePort, ROOT, SECRET, startBoosterProcess, startEmbeddedPostgres, statusGet, stop, waitFor } from './booster-lib.js';
import { benchAuthHeaders, prepareTicketBenchDb } from './ticket-bench-db.js';

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
const duration = Number(flag('duration') ?? 5);
const warmup = Number(flag('warmup') ?? 5);
const clientCounts = (flag('clients') ?? '8,32').split(',').map(Number);
const serverCounts = (flag('servers') ?? '1,2,3').split(',').map(Number);
const formKey = flag('form') === 'simple' ? 'bench-simple' : 'it-request';
const baseline = flag('baseline');

/** Busy ticks of the whole machine (all CPUs), from /proc/stat. */
function machineBusyTicks(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
}

// An embedded PostgreSQL unless --db names another database (whose CPU is then not measured).
const pg = flag('db') ? null : await startEmbeddedPostgres(['-c', 'max_connections=200']);
const url = flag('db') ?? pg!.url;
const postmaster = pg?.postmaster ?? 0;
const db = await prepareTicketBenchDb(url, formKey);

const boosterPort = await freePort();
const boosterUrl = `http://127.0.0.1:${boosterPort}`;
const children: ChildProcess[] = [];
let pool: Pool | null = null;

async function startServer(i: number, root = ROOT, tag = 's'): Promise<ChildProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(root, 'common/bin/omflow.mjs'), 'server'], {
    env: {
      PATH: process.env.PATH,
      OMFLOW_DB_URL: url,
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_NODE_ID: `bench-${tag}${i}`,
      OMFLOW_LOG_LEVEL: 'warn',
      OMFLOW_SERVER_PORT: String(port),
      OMFLOW_DB_POOL_MAX: '10',
      BOOSTER_IP: '127.0.0.1',
      BOOSTER_PORT: String(boosterPort),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

async function measure(n: number, clients: number, prefix: string, warmupSeconds: number): Promise<void> {
  pool = new Pool(boosterUrl, { connections: clients });
  const headers = await benchAuthHeaders(pool);
  const latencies: number[] = [];
  let errors = 0;
  const statuses = new Map<number, number>();
  let i = 0;
  const run = async (until: number, record: boolean) => {
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (Date.now() < until) {
          const t0 = performance.now();
          const res = await pool!.request({
            path: `/api/forms/${formKey}/tickets`,
            method: 'POST',
            headers,
            body: JSON.stringify({ data: { title: `bench ${i++}`, category: 'software', amount: i % 200_000 } }),
          });
          await res.body.text();
          if (!record) continue;
          if (res.statusCode === 201) latencies.push(performance.now() - t0);
          else {
            errors++;
            statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
          }
        }
      }),
    );
  };
  await run(Date.now() + warmupSeconds * 1000, false);
  const d0 = postmaster ? cpuTicks(postmaster, true) : 0;
  const m0 = machineBusyTicks();
  const t0 = Date.now();
  await run(t0 + duration * 1000, true);
  const seconds = (Date.now() - t0) / 1000;
  const dbCpu = postmaster ? cpuTicks(postmaster, true) - d0 : 0;
  const busy = machineBusyTicks() - m0;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN).toFixed(1);
  const share = postmaster ? `${((100 * dbCpu) / Math.max(1, busy)).toFixed(0)}% (${(dbCpu / 100 / seconds).toFixed(2)})` : 'n/a';
  console.log(
    `${prefix}${String(n).padStart(7)} ${String(clients).padStart(7)} ${(latencies.length / seconds).toFixed(0).padStart(10)} ${pct(0.5).padStart(8)} ${pct(0.99).padStart(8)} ${String(errors).padStart(7)}  ${share}${statuses.size ? `  (errors by status: ${[...statuses].map(([k, v]) => `${k}×${v}`).join(', ')})` : ''}`,
  );
  await pool.close();
  pool = null;
}

// /_booster/status wants credentials: signed with the bench's cluster secret.
const upServers = async () => ((await (await statusGet(boosterUrl)).json()) as { servers: { state: string }[] }).servers.filter((s) => s.state === 'up').length;

try {
  children.push(
    startBoosterProcess('0,1', {
      OMFLOW_DB_URL: url,
      OMFLOW_NODE_ID: 'bench-booster',
      OMFLOW_BOOSTER_PORT: String(boosterPort),
      OMFLOW_BOOSTER_ADVERTISE_URL: boosterUrl,
      OMFLOW_BOOSTER_SLOW_START_MS: '0',
      // Throughput, not admission: the booster never sheds here (bench/tickets-overload does).
      OMFLOW_BOOSTER_DB_PRESSURE_MS: '0',
      OMFLOW_LOG_LEVEL: 'error',
    }),
  );
  await waitFor(async () => (await fetch(`${boosterUrl}/_booster/active`)).status === 200, 'booster active');
  console.log(
    `tickets-through-booster: form ${formKey} (${db.vendor}${pg ? ', embedded, fsync off' : ''}), ${duration} s per cell after 1 s warm-up (${warmup} s per server for a new set of servers), one booster`,
  );
  console.log(`${baseline ? 'tree     ' : ''}servers clients  tickets/s   p50 ms   p99 ms  errors  db CPU share (cores)`);
  const trees: [string, string, string][] = baseline
    ? [
        ['baseline', baseline, 'b'],
        ['this', ROOT, 's'],
      ]
    : [['this', ROOT, 's']];
  for (const n of serverCounts) {
    for (const [label, root, tag] of trees) {
      const mine: ChildProcess[] = [];
      for (let k = 1; k <= n; k++) mine.push(await startServer(k, root, tag));
      await waitFor(async () => (await upServers()) === n, `${n} ${label} servers up`, 60_000);
      for (const [c, clients] of clientCounts.entries()) {
        await measure(n, clients, baseline ? `${label.padEnd(8)} ` : '', c === 0 ? Math.max(1, warmup * n) : 1);
        // The steps of the measured tickets run before the next cell, so no cell inherits a backlog.
        await waitFor(
          async () => Number((await db.knex('steps').whereIn('state', ['ready', 'assigned']).count({ n: '*' }).first())!.n) === 0,
          'steps drained',
          300_000,
        );
      }
      // Stopped gracefully (they report draining, then stop heartbeating): the next set starts alone.
      for (const c of mine) await stop(c);
      await waitFor(async () => (await upServers()) === 0, 'servers gone', 60_000);
    }
  }
  const dup = await db.knex('tickets').groupBy('ticket_no').select('ticket_no').count({ n: '*' }).havingRaw('count(*) > 1');
  console.log(`  tickets in database ${Number((await db.knex('tickets').count({ n: '*' }).first())!.n)} (incl. warm-up), duplicate numbers ${dup.length}`);
} finally {
  if (pool) await pool.close();
  for (const c of children.reverse()) await stop(c);
  await db.destroy();
  await pg?.stop();
}
