// bench/booster-memory: RSS of a booster process holding 1,000 open keep-alive client
// connections (each has made one proxied request). Goal <= 150 MB.
// Usage: npx tsx bench/booster-memory.ts [--connections 1000]

import type { ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { freePort, rssMb, startBoosterProcess, startPinned, startPostgres, statusGet, stop, tsxArgs, waitFor } from './booster-lib.js';

const args = process.argv.slice(2);
const n = Number(args[args.indexOf('--connections') + 1] || 0) || 1000;
const pg = await startPostgres();
let booster: ChildProcess | undefined;
let up: ChildProcess | undefined;
const sockets: Socket[] = [];
try {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const upPort = await freePort();
  up = (
    await startPinned('0,1', process.execPath, tsxArgs('bench/booster-upstream.ts'), { PORT: String(upPort), BOOSTERS: url, NODE_ID: 'bench-up' }, /LISTENING/)
  ).child;
  booster = startBoosterProcess('0,1', {
    OMFLOW_DB_URL: pg.url,
    OMFLOW_NODE_ID: 'bench-mem',
    OMFLOW_BOOSTER_PORT: String(port),
    OMFLOW_BOOSTER_SLOW_START_MS: '0',
  });
  await waitFor(async () => {
    const st = (await (await statusGet(url)).json()) as { role: string; servers: { state: string }[] };
    return st.role === 'active' && st.servers.some((s) => s.state === 'up');
  }, 'booster ready');
  for (let i = 0; i < 200; i++) await (await fetch(`${url}/warm`)).arrayBuffer();
  const idle = rssMb(booster.pid!);
  const t0 = performance.now();
  await Promise.all(
    Array.from(
      { length: n },
      (_, i) =>
        new Promise<void>((resolve, reject) => {
          const s = connect(port, '127.0.0.1', () => s.write(`GET /c${i} HTTP/1.1\r\nhost: bench\r\n\r\n`));
          s.once('data', () => resolve());
          s.on('error', reject);
          sockets.push(s);
        }),
    ),
  );
  const openMs = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 300));
  const open = rssMb(booster.pid!);
  const st = (await (await statusGet(url)).json()) as { servers: { state: string }[] };
  console.log(`\nbooster-memory: ${n} open keep-alive client connections (each after one proxied GET), opened in ${openMs.toFixed(0)} ms`);
  console.log(
    `booster RSS: ${idle.toFixed(1)} MB warm and idle, ${open.toFixed(1)} MB with ${n} connections open (goal <= 150 MB); servers: ${st.servers.map((s) => s.state).join(',')}`,
  );
} finally {
  for (const s of sockets) s.destroy();
  await stop(booster);
  await stop(up);
  await pg.stop();
}
