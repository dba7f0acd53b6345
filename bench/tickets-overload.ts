// bench/tickets-overload: admission under overload. One booster in front of one app server
// (embedded PostgreSQL, fsync off). First the sustainable rate R is measured (closed loop,
// --clients clients through the booster; enough of them to saturate the server); then tickets are
// offered open-loop at --factor × R (default 2×) for --duration seconds in each mode, each with a
// fresh booster and server on the same database:
//   unprotected:      no adaptive limit (OMFLOW_BOOSTER_ADAPTIVE_LIMIT=false), no shedding (OMFLOW_BOOSTER_DB_PRESSURE_MS=0)
//   db pressure:      shedding on the heartbeat's database figures only (--pressure-ms, default 500; ADR 0011)
//   adaptive + db:    the defaults: adaptive concurrency limit, standing-queue rule and database pressure
// Latency is counted from each request's scheduled send time (no coordinated omission). Prints
// per mode: created/s, shed (503 BOOSTER_ERR_DB_PRESSURE), other answers by status/code (503
// BOOSTER_ERR_QUEUE_TIMEOUT: waited its bounded time in the booster's queue), p50/p99/max of the
// created tickets, and p99 per second of the run, so a growing p99 (queueing without bound) and a
// bounded one can be told apart.
// --form simple: a form whose flow starts at a human step (creation alone: no step backlog that
// the next mode would inherit; the modes are compared on the same work).
// Usage: npx tsx bench/tickets-overload.ts [--duration 10] [--factor 2] [--clients 64] [--pressure-ms 500] [--pool-max 10] [--form it-request|simple] [--modes unprotected,db,adaptive]
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Pool } from 'undici';
import { freePort, ROOT, SECRET, startBoosterProcess, startEmbeddedPostgres, statusGet, stop, waitFor } from './booster-lib.js';
import { offerOpenLoop, printOpenLoop } from './open-loop.js';
import { benchAuthHeaders, prepareTicketBenchDb } from './ticket-bench-db.js';

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
const duration = Number(flag('duration') ?? 10);
const factor = Number(flag('factor') ?? 2);
const clients = Number(flag('clients') ?? 64);
const modes = (flag('modes') ?? 'unprotected,db,adaptive').split(',');
const pressureMs = flag('pressure-ms') ?? '500';
const poolMax = flag('pool-max') ?? '10';
const formKey = flag('form') === 'simple' ? 'bench-simple' : 'it-request';

const pg = await startEmbeddedPostgres(['-c', 'max_connections=200']);
const url = pg.url;
const db = await prepareTicketBenchDb(url, formKey);

const children: ChildProcess[] = [];

/** A booster (shedding at `pressure` ms, 0: off; adaptive limit on or off) and one server heartbeating to it. */
async function startCluster(pressure: string, adaptive: boolean, n: number): Promise<{ boosterUrl: string; procs: ChildProcess[] }> {
  const boosterPort = await freePort();
  const boosterUrl = `http://127.0.0.1:${boosterPort}`;
  const booster = startBoosterProcess('0,1', {
    OMFLOW_DB_URL: url,
    OMFLOW_NODE_ID: `bench-booster-${n}`,
    OMFLOW_BOOSTER_PORT: String(boosterPort),
    OMFLOW_BOOSTER_ADVERTISE_URL: boosterUrl,
    OMFLOW_BOOSTER_SLOW_START_MS: '0',
    OMFLOW_BOOSTER_DB_PRESSURE_MS: pressure,
    OMFLOW_BOOSTER_ADAPTIVE_LIMIT: String(adaptive),
    OMFLOW_LOG_LEVEL: 'error',
  });
  children.push(booster);
  await waitFor(async () => (await fetch(`${boosterUrl}/_booster/active`)).status === 200, 'booster active');
  const server = spawn(process.execPath, [join(ROOT, 'common/bin/omflow.mjs'), 'server'], {
    env: {
      PATH: process.env.PATH,
      OMFLOW_DB_URL: url,
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_NODE_ID: `bench-s${n}`,
      OMFLOW_LOG_LEVEL: 'error',
      OMFLOW_SERVER_PORT: String(await freePort()),
      OMFLOW_DB_POOL_MAX: poolMax,
      BOOSTER_IP: '127.0.0.1',
      BOOSTER_PORT: String(boosterPort),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(server);
  await waitFor(
    async () => {
      const r = await fetch(`${boosterUrl}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: 'bench', password: 'bench-password' }),
      });
      return r.status === 200;
    },
    'server routable',
    60_000,
  );
  return { boosterUrl, procs: [server, booster] };
}

const queuedSteps = async () => Number((await db.knex('steps').whereIn('state', ['ready', 'assigned']).count({ n: '*' }).first())!.n);

let seq = 0;
const body = () => {
  const n = seq++;
  return JSON.stringify({ data: { title: `overload ${n}`, category: 'software', amount: n % 200_000 } });
};

/** Closed loop: `clients` clients back to back for `seconds`; tickets/s. */
async function sustainable(boosterUrl: string, seconds: number): Promise<number> {
  const pool = new Pool(boosterUrl, { connections: clients });
  const headers = await benchAuthHeaders(pool);
  let ok = 0;
  const run = async (until: number, count: boolean) =>
    Promise.all(
      Array.from({ length: clients }, async () => {
        while (Date.now() < until) {
          const r = await pool.request({ path: `/api/forms/${formKey}/tickets`, method: 'POST', headers, body: body() });
          await r.body.text();
          if (count && r.statusCode === 201) ok++;
        }
      }),
    );
  await run(Date.now() + 1000, false);
  const t0 = Date.now();
  await run(t0 + seconds * 1000, true);
  await pool.close();
  return ok / ((Date.now() - t0) / 1000);
}

/** Open loop at `rate`/s for `seconds` through the booster: the ticket creation, printed per outcome. */
async function offer(boosterUrl: string, rate: number, seconds: number, label: string): Promise<void> {
  const pool = new Pool(boosterUrl, { connections: 1024, pipelining: 1 });
  const headers = await benchAuthHeaders(pool);
  printOpenLoop(
    label,
    rate,
    seconds,
    await offerOpenLoop(pool, { rate, seconds, request: () => ({ path: `/api/forms/${formKey}/tickets`, method: 'POST', headers, body: body() }), ok: 201 }),
  );
  await pool.close();
}

try {
  console.log(
    `tickets-overload: form ${formKey} (postgres, embedded, fsync off), one booster, one server (pool max ${poolMax}); ${factor}× the sustainable rate for ${duration} s`,
  );
  let rate = 0;
  let n = 0;
  const all = [
    { key: 'unprotected', label: 'unprotected', pressure: '0', adaptive: false },
    { key: 'db', label: `db pressure (${pressureMs} ms)`, pressure: pressureMs, adaptive: false },
    { key: 'adaptive', label: 'adaptive + db', pressure: pressureMs, adaptive: true },
  ];
  for (const { label: mode, pressure, adaptive } of all.filter((m) => modes.includes(m.key))) {
    const { boosterUrl, procs } = await startCluster(pressure, adaptive, ++n);
    if (rate === 0) {
      const r = await sustainable(boosterUrl, 5);
      rate = r * factor;
      console.log(`sustainable (closed loop, ${clients} clients, 5 s): ${r.toFixed(0)} tickets/s → offered ${rate.toFixed(0)}/s`);
    }
    // Every mode should start with an empty step queue (the steps of earlier tickets compete).
    const drained = async () => {
      const ok = await waitFor(async () => (await queuedSteps()) === 0, 'steps drained', 120_000).then(
        () => true,
        () => false,
      );
      if (!ok) console.log(`  (steps still queued after 120 s: ${await queuedSteps()}; going on)`);
    };
    await drained();
    // The limit the booster learnt, sampled while the load runs (it relaxes once the load is gone).
    const limits: number[] = [];
    const sampler = setInterval(() => {
      void statusGet(boosterUrl)
        .then((r) => r.json() as Promise<{ servers: { id: string; concurrencyLimit: number }[] }>)
        // The earlier modes' servers are still listed (down): read this mode's.
        .then((st) => limits.push(st.servers.find((s) => s.id === `bench-s${n}`)?.concurrencyLimit ?? Number.NaN))
        .catch(() => {});
    }, 1000);
    await offer(boosterUrl, rate, duration, mode);
    clearInterval(sampler);
    console.log(`${''.padEnd(22)} concurrency limit each second: ${limits.join(' ')}`);
    await drained();
    for (const c of procs) await stop(c);
  }
} finally {
  for (const c of children.reverse()) await stop(c);
  await db.destroy();
  await pg.stop();
}
