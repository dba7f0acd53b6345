// bench/booster-overload: the booster's admission in an overload it can act on, without the
// machine's CPU as the bottleneck. One booster (one process, CPU 1) in front of one server that
// behaves like a database-bound app server (bench/booster-upstream.ts GET /work: --slots requests
// worked on at once for --work-ms each, the rest wait inside it; capacity slots × 1000 / work-ms
// per second, no CPU). The load is offered open-loop at --factor × that capacity for --duration
// seconds, once with the adaptive limit off (OMFLOW_BOOSTER_ADAPTIVE_LIMIT=false: the fixed
// in-flight maximum) and once on (the default), each with a fresh booster. Prints per mode: ok/s,
// the other answers by code (503 BOOSTER_ERR_QUEUE_TIMEOUT: waited its bounded time in the
// booster), p50/p99/max and the p99 by second sent, the concurrency limit each second, and the
// most requests that were inside the server at once.
// Usage: npx tsx bench/booster-overload.ts [--duration 10] [--factor 2] [--slots 8] [--work-ms 20]
import { Pool } from 'undici';
import { freePort, startBoosterProcess, startPinned, startPostgres, statusGet, stop, tsxArgs, waitFor } from './booster-lib.js';
import { offerOpenLoop, printOpenLoop } from './open-loop.js';

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
const duration = Number(flag('duration') ?? 10);
const factor = Number(flag('factor') ?? 2);
const slots = Number(flag('slots') ?? 8);
const workMs = Number(flag('work-ms') ?? 20);
const capacity = (slots * 1000) / workMs;
const rate = capacity * factor;

const pg = await startPostgres();
const stops: (() => Promise<void>)[] = [];
try {
  console.log(
    `booster-overload: one booster, one server working on ${slots} requests at once for ${workMs} ms (capacity ${capacity}/s); ${factor}× that for ${duration} s`,
  );
  let n = 0;
  for (const adaptive of [false, true]) {
    n++;
    const boosterPort = await freePort();
    const boosterUrl = `http://127.0.0.1:${boosterPort}`;
    const upPort = await freePort();
    const up = await startPinned(
      '1',
      process.execPath,
      tsxArgs('bench/booster-upstream.ts'),
      { PORT: String(upPort), BOOSTERS: boosterUrl, NODE_ID: `overload-up-${n}`, WORK_SLOTS: String(slots), WORK_MS: String(workMs) },
      /LISTENING/,
    );
    const booster = startBoosterProcess('1', {
      OMFLOW_DB_URL: pg.url,
      OMFLOW_NODE_ID: `overload-booster-${n}`,
      OMFLOW_BOOSTER_PORT: String(boosterPort),
      OMFLOW_BOOSTER_SLOW_START_MS: '0',
      OMFLOW_BOOSTER_ADAPTIVE_LIMIT: String(adaptive),
    });
    stops.push(
      () => stop(booster),
      () => stop(up.child),
    );
    await waitFor(async () => {
      const st = (await (await statusGet(boosterUrl)).json()) as { role: string; servers: { state: string }[] };
      return st.role === 'active' && st.servers.some((s) => s.state === 'up');
    }, 'booster active with the server up');
    const limits: string[] = [];
    const sampler = setInterval(() => {
      void statusGet(boosterUrl)
        .then((r) => r.json() as Promise<{ servers: { id: string; concurrencyLimit: number; awaitingHeaders: number }[] }>)
        .then((st) => {
          const s = st.servers.find((x) => x.id === `overload-up-${n}`); // the earlier mode's server is still listed, down
          limits.push(`${s?.concurrencyLimit}/${s?.awaitingHeaders}`);
        })
        .catch(() => {});
    }, 1000);
    const pool = new Pool(boosterUrl, { connections: 2048 });
    await fetch(`http://127.0.0.1:${upPort}/work-peak`);
    const result = await offerOpenLoop(pool, { rate, seconds: duration, request: () => ({ path: '/work', method: 'GET' }), ok: 200 });
    clearInterval(sampler);
    const { peak } = (await (await fetch(`http://127.0.0.1:${upPort}/work-peak`)).json()) as { peak: number };
    printOpenLoop(adaptive ? 'adaptive limit' : 'fixed maximum (256)', rate, duration, result);
    console.log(`${''.padEnd(22)} limit/awaiting headers each second: ${limits.join(' ')}; most inside the server at once: ${peak}`);
    await pool.close();
    for (const s of stops.splice(0)) await s();
  }
} finally {
  for (const s of stops) await s();
  await pg.stop();
}
