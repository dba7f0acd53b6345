// bench/booster-switchover: `omflow switchover` back and forth under load. Two boosters (real
// processes, OMFLOW_BOOSTER_WORKERS as given, default one per core) in front of two upstreams that
// fence epochs like the real app server and store keyed writes; clients routed the way a load
// balancer's health check routes them (test/helpers/routed-load.ts: `/_booster/active` every
// --check-ms, rise 1, fall 2), never retrying. Each trial sends the switchover (write token) to the
// active and prints: the hand-over the booster measured (lease write → the standby took it up), the
// time until the new active answered /_booster/active 200 as seen from the client side, and when
// the clients moved. At the end: requests, failed requests (with why), tickets lost or duplicated.
// Usage: npx tsx bench/booster-switchover.ts [--trials 10] [--clients 8] [--check-ms 100] [--workers 0]
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { openSync } from 'node:fs';
import knexFactory from 'knex';
import { BOOSTER_PATH } from '../common/protocol/headers.js';
import { startRoutedLoad } from '../test/helpers/routed-load.js';
import { activeCode, freePort, ROOT, SECRET, startBoosterProcess, startPinned, startPostgres, stop, tsxArgs, waitFor } from './booster-lib.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const trials = arg('trials', 10);
const clients = arg('clients', 8);
const checkMs = arg('check-ms', 100);
const workers = String(arg('workers', 0));
const TOKEN = 'bench-switchover-token-0123456789abcdef';
// --logs DIR: each booster's log (level info) goes to DIR/booster-N.log.
const logDir = args.includes('--logs') ? args[args.indexOf('--logs') + 1] : null;
const startBooster = (i: number): ChildProcess =>
  logDir
    ? spawn('taskset', ['-c', '0,1', process.execPath, 'common/bin/omflow.mjs', 'booster'], {
        cwd: ROOT,
        env: { ...process.env, OMFLOW_CLUSTER_SECRET: SECRET, OMFLOW_BOOSTER_HOST: '127.0.0.1', OMFLOW_LOG_LEVEL: 'info', ...env(i) },
        stdio: ['ignore', openSync(`${logDir}/booster-${i}.log`, 'a'), openSync(`${logDir}/booster-${i}.log`, 'a')],
      })
    : startBoosterProcess('0,1', env(i));

const pg = await startPostgres();
const ports = [await freePort(), await freePort()];
const urls = ports.map((p) => `http://127.0.0.1:${p}`);
const procs: (ChildProcess | undefined)[] = [undefined, undefined];
const ups: ChildProcess[] = [];
const env = (i: number) => ({
  OMFLOW_DB_URL: pg.url,
  OMFLOW_NODE_ID: `bench-b${i}`,
  OMFLOW_BOOSTER_PORT: String(ports[i]),
  OMFLOW_BOOSTER_ADVERTISE_URL: urls[i],
  OMFLOW_BOOSTER_PEER_URL: urls[1 - i],
  OMFLOW_BOOSTER_SLOW_START_MS: '0',
  OMFLOW_BOOSTER_WORKERS: workers,
  OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS: `bench:${TOKEN}`,
});
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const acked = new Set<string>();
let load: ReturnType<typeof startRoutedLoad> | undefined;
try {
  for (const n of [1, 2]) {
    const port = await freePort();
    ups.push(
      (
        await startPinned(
          '0,1',
          process.execPath,
          tsxArgs('bench/booster-upstream.ts'),
          { PORT: String(port), BOOSTERS: urls.join(','), DB_URL: pg.url, NODE_ID: `bench-up${n}` },
          /LISTENING/,
        )
      ).child,
    );
  }
  procs[0] = startBooster(0);
  await waitFor(async () => (await activeCode(urls[0])) === 200, 'booster 0 active');
  procs[1] = startBooster(1);
  await waitFor(async () => (await activeCode(urls[1])) === 503, 'booster 1 standby');
  await waitFor(async () => (await fetch(`${urls[0]}/warm`)).status === 200, 'upstreams routed');

  load = startRoutedLoad({
    boosters: urls,
    clients,
    checkMs,
    next: (_c, i) =>
      i % 2
        ? { method: 'GET', path: '/get' }
        : { method: 'POST', path: '/tickets', headers: { 'idempotency-key': randomUUID(), 'content-type': 'application/json' }, body: '{}' },
    onAnswer: (_b, _s, _body, req) => {
      if (req.method === 'POST') acked.add(String(req.headers?.['idempotency-key']));
    },
  });
  const l = load;
  await waitFor(async () => l.sent() > 500, 'load flowing');

  const handover: number[] = [];
  const newActive: number[] = [];
  const moved: number[] = [];
  for (let t = 0; t < trials; t++) {
    await new Promise((r) => setTimeout(r, 1500));
    let active = -1;
    await waitFor(async () => (active = (await Promise.all(urls.map(activeCode))).indexOf(200)) >= 0, `an active booster before trial ${t + 1}`, 20_000);
    const other = 1 - active;
    const movesBefore = l.moves.length;
    const t0 = performance.now();
    const d0 = Date.now();
    const sent = fetch(urls[active] + BOOSTER_PATH.switchover, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: '{}',
    });
    await waitFor(async () => (await activeCode(urls[other])) === 200, 'the standby active', 10_000);
    newActive.push(performance.now() - t0);
    const r = await sent;
    const body = (await r.json()) as { handoverMs?: number; confirmed?: boolean; code?: string };
    if (r.status !== 200) throw new Error(`switchover refused: ${JSON.stringify(body)}`);
    handover.push(body.handoverMs ?? Number.NaN);
    await waitFor(async () => l.moves.length > movesBefore, 'clients moved', 10_000);
    moved.push(l.moves[l.moves.length - 1].at - d0);
    process.stderr.write(
      `trial ${t + 1}/${trials}: handed over in ${body.handoverMs} ms (confirmed ${body.confirmed}), new active answered after ${newActive[t].toFixed(0)} ms, clients moved after ${moved[t].toFixed(0)} ms\n`,
    );
  }
  await new Promise((r) => setTimeout(r, 1000));
  await l.stop();
  load = undefined;

  const knex = knexFactory({ client: 'pg', connection: pg.url });
  const rows = await knex('bench_tickets').select('idem_key');
  const dup = await knex('bench_tickets').select('idem_key').count({ n: '*' }).groupBy('idem_key').havingRaw('count(*) > 1');
  await knex.destroy();
  const stored = new Set(rows.map((r) => r.idem_key as string));
  const lost = [...acked].filter((k) => !stored.has(k)).length;
  console.log(
    `\nbooster-switchover: ${trials} switchovers back and forth, ${clients} clients routed by /_booster/active every ${checkMs} ms (no client retry), workers=${workers}`,
  );
  console.log(`hand-over (lease write → standby took it up) ms: median ${median(handover).toFixed(0)}, max ${Math.max(...handover).toFixed(0)} (goal ≤ 1000)`);
  console.log(`command sent → new active answers /_booster/active 200, ms: median ${median(newActive).toFixed(0)}, max ${Math.max(...newActive).toFixed(0)}`);
  console.log(`command sent → clients moved (health check), ms: median ${median(moved).toFixed(0)}, max ${Math.max(...moved).toFixed(0)}`);
  console.log(
    `requests: ${l.sent()} sent, ${l.failures.length} failed${l.failures.length ? `: ${[...new Set(l.failures.map((f) => f.why))].join('; ')}` : ''}`,
  );
  console.log(`tickets: ${acked.size} acknowledged, ${rows.length} stored, ${lost} acknowledged but lost, ${dup.length} duplicated keys`);
} finally {
  await load?.stop().catch(() => {});
  for (const p of procs) await stop(p);
  for (const u of ups) await stop(u);
  await pg.stop();
}
