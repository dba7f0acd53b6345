// bench/booster-failover: 20 trials of kill -9 on the active booster under steady keyed ticket
// load. Prints takeover time (median, max), failed requests, tickets lost and duplicated.
// The client behaves like a VIP-following API client: on a connection error or a standby 503 it
// retries the same Idempotency-Key against the other booster until a 10 s deadline.
// Usage: npx tsx bench/booster-failover.ts [--trials 20]

import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import knexFactory from 'knex';
import { activeCode, freePort, startBoosterProcess, startPinned, startPostgres, stop, tsxArgs, waitFor } from './booster-lib.js';

const args = process.argv.slice(2);
const trials = Number(args[args.indexOf('--trials') + 1] || 0) || 20;
const pg = await startPostgres();
const ports = [await freePort(), await freePort()];
const urls = ports.map((p) => `http://127.0.0.1:${p}`);
const procs: (ChildProcess | undefined)[] = [undefined, undefined];
const env = (i: number) => ({
  OMFLOW_DB_URL: pg.url,
  OMFLOW_NODE_ID: `bench-b${i}`,
  OMFLOW_BOOSTER_PORT: String(ports[i]),
  OMFLOW_BOOSTER_ADVERTISE_URL: urls[i],
  OMFLOW_BOOSTER_PEER_URL: urls[1 - i],
  OMFLOW_BOOSTER_SLOW_START_MS: '0',
});

const takeovers: number[] = [];
const acked = new Set<string>();
let attemptsFailed = 0;
let gaveUp = 0;
let sent = 0;
let running = true;
let up: ChildProcess | undefined;

try {
  const upPort = await freePort();
  up = (
    await startPinned(
      '0,1',
      process.execPath,
      tsxArgs('bench/booster-upstream.ts'),
      { PORT: String(upPort), BOOSTERS: urls.join(','), DB_URL: pg.url, NODE_ID: 'bench-up' },
      /LISTENING/,
    )
  ).child;
  procs[0] = startBoosterProcess('0,1', env(0));
  await waitFor(async () => (await activeCode(urls[0])) === 200, 'booster 0 active');
  procs[1] = startBoosterProcess('0,1', env(1));
  await waitFor(async () => (await activeCode(urls[1])) === 503, 'booster 1 standby');
  await waitFor(
    async () => (await (await fetch(`${urls[0]}/tickets`, { method: 'POST', headers: { 'idempotency-key': randomUUID() } })).status) < 300,
    'upstream routed',
  );

  let guess = 0;
  async function keyedPost(): Promise<void> {
    const key = randomUUID();
    sent++;
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        const r = await fetch(`${urls[guess]}/tickets`, {
          method: 'POST',
          body: JSON.stringify({ title: key }),
          headers: { 'content-type': 'application/json', 'idempotency-key': key },
          signal: AbortSignal.timeout(3000),
        });
        await r.arrayBuffer();
        if (r.status === 200 || r.status === 201) {
          acked.add(key);
          return;
        }
      } catch {
        // connection refused or reset: the booster died
      }
      attemptsFailed++;
      guess = 1 - guess;
      await new Promise((r) => setTimeout(r, 20));
    }
    gaveUp++;
  }
  const workers = Array.from({ length: 8 }, async () => {
    while (running) await keyedPost();
  });

  for (let t = 0; t < trials; t++) {
    await new Promise((r) => setTimeout(r, 500));
    const codes = await Promise.all(urls.map(activeCode));
    const active = codes.indexOf(200);
    if (active < 0) throw new Error(`no active booster before trial ${t}: ${codes}`);
    const other = 1 - active;
    const t0 = performance.now();
    procs[active]!.kill('SIGKILL');
    await waitFor(async () => (await activeCode(urls[other])) === 200, 'takeover', 10_000);
    takeovers.push(performance.now() - t0);
    const dead = procs[active]!;
    if (dead.exitCode === null && dead.signalCode === null) await new Promise((r) => dead.once('exit', r));
    procs[active] = startBoosterProcess('0,1', env(active));
    await waitFor(async () => (await activeCode(urls[active])) === 503, 'restarted booster standby');
    process.stderr.write(`trial ${t + 1}/${trials}: takeover ${takeovers[t].toFixed(0)} ms\n`);
  }
  running = false;
  await Promise.all(workers);

  const knex = knexFactory({ client: 'pg', connection: pg.url });
  const rows = await knex('bench_tickets').select('idem_key');
  const dup = await knex('bench_tickets').select('idem_key').count({ n: '*' }).groupBy('idem_key').havingRaw('count(*) > 1');
  await knex.destroy();
  const stored = new Set(rows.map((r) => r.idem_key as string));
  const lost = [...acked].filter((k) => !stored.has(k)).length;
  const sorted = [...takeovers].sort((a, b) => a - b);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  console.log(`\nbooster-failover: ${trials} trials of kill -9 on the active, 8 clients of keyed POST /tickets`);
  console.log(
    `takeover ms: median ${median.toFixed(0)}, max ${sorted[sorted.length - 1].toFixed(0)}, min ${sorted[0].toFixed(0)} (goal: median <= 1000, max <= 2000)`,
  );
  console.log(`requests: ${sent} sent, ${acked.size} acknowledged, ${gaveUp} failed after client retries, ${attemptsFailed} attempts retried by the client`);
  console.log(`tickets: ${rows.length} stored, ${lost} acknowledged but lost, ${dup.length} duplicated keys`);
} finally {
  running = false;
  for (const p of procs) await stop(p);
  await stop(up);
  await pg.stop();
}
