// bench/booster-reload: what `systemctl reload` costs a Booster under load. One Booster with two
// data-plane workers (`omflow --config FILE booster`, as the unit runs it) in front of a bench
// upstream; wrk drives GETs through it in rounds, each round either quiet or with a SIGHUP every
// --every ms, each reload changing the upstream timeouts (new pools in every worker, the old
// ones drained) and the access log on or off. Prints req/s, p50, p99 and errors (non-2xx and
// socket errors) of both kinds of round, the reloads applied (from the Booster's log), and that
// the epoch did not change (no takeover).
// Usage: npx tsx bench/booster-reload.ts [--duration 5] [--rounds 3] [--every 250] [--connections 50]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, median, ROOT, SECRET, startPinned, startPostgres, statusGet, stop, tsxArgs, type WrkFigures, waitFor, wrk } from './booster-lib.js';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number) => Number(args[args.indexOf(`--${name}`) + 1] || 0) || dflt;
const duration = arg('duration', 5);
const rounds = arg('rounds', 3);
const everyMs = arg('every', 250);
const connections = arg('connections', 50);
const dir = mkdtempSync(join(tmpdir(), 'omflow-bench-reload-'));
const pg = await startPostgres();
const children: { kill: () => Promise<void> }[] = [];
const quiet: WrkFigures[] = [];
const reloading: WrkFigures[] = [];
let reloads = 0;
let applied = 0;
const epochs: number[] = [];
try {
  const upPort = await freePort();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const up = await startPinned(
    '1',
    process.execPath,
    tsxArgs('bench/booster-upstream.ts'),
    { PORT: String(upPort), BOOSTERS: url, NODE_ID: 'bench-up' },
    /LISTENING/,
  );
  children.push({ kill: () => stop(up.child) });
  const file = join(dir, 'booster.env');
  const base: Record<string, string> = {
    OMFLOW_DB_URL: pg.url,
    OMFLOW_CLUSTER_SECRET: SECRET,
    OMFLOW_NODE_ID: 'bench-reload',
    OMFLOW_BOOSTER_HOST: '127.0.0.1',
    OMFLOW_BOOSTER_PORT: String(port),
    OMFLOW_BOOSTER_SLOW_START_MS: '0',
    OMFLOW_BOOSTER_WORKERS: '2',
    OMFLOW_LOG_LEVEL: 'info',
    OMFLOW_DATA_DIR: dir,
  };
  // Two versions of the file, swapped at each reload: other upstream timeouts (new pools in every
  // worker, the old ones drain) and the access log on or off.
  const version = (i: number) =>
    Object.entries({
      ...base,
      OMFLOW_BOOSTER_CONNECT_TIMEOUT_MS: String(2000 + i),
      OMFLOW_BOOSTER_KEEPALIVE_MS: String(4000 + i),
      OMFLOW_BOOSTER_ACCESS_LOG: i ? 'json' : 'off',
      OMFLOW_BOOSTER_ACCESS_LOG_FILE: join(dir, 'access.log'),
    })
      .map(([k, v]) => `${k}=${v}\n`)
      .join('');
  writeFileSync(`${file}.0`, version(0));
  writeFileSync(`${file}.1`, version(1));
  writeFileSync(file, version(0));
  // As the unit starts it: the file is the configuration, on CPU 1 with the upstream (wrk on CPU 0).
  const booster = spawn('taskset', ['-c', '1', process.execPath, 'common/bin/omflow.mjs', '--config', file, 'booster'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  booster.stdout!.on('data', (d) => {
    out += d;
    applied += (String(d).match(/"msg":"configuration reloaded"/g) ?? []).length;
    if (out.length > 1_000_000) out = out.slice(-100_000);
  });
  children.push({ kill: () => stop(booster) });
  const status = async () => (await (await statusGet(url)).json()) as { role: string; epoch: number; servers: { state: string }[] };
  await waitFor(async () => {
    const st = await status();
    return st.role === 'active' && st.servers.some((s) => s.state === 'up');
  }, 'booster active with the upstream up');
  epochs.push((await status()).epoch);

  wrk(`${url}/`, { connections, durationS: 2 }); // warm-up
  for (let r = 0; r < rounds; r++) {
    const q = wrk(`${url}/`, { connections, durationS: duration });
    quiet.push(q);
    process.stderr.write(`quiet round ${r + 1}: ${q.rps.toFixed(0)} req/s, ${q.errors} errors\n`);
    // wrk blocks this process: the reloads come from a child that swaps the file and signals the Booster meanwhile.
    const signaller = spawn(
      process.execPath,
      [
        '-e',
        `const fs = require('fs'); let i = 0;
         const t = setInterval(() => { i++; fs.copyFileSync(process.argv[1] + '.' + (i % 2), process.argv[1]); process.kill(Number(process.argv[2]), 'SIGHUP'); process.stdout.write('.'); }, ${everyMs});
         setTimeout(() => { clearInterval(t); fs.copyFileSync(process.argv[1] + '.0', process.argv[1]); }, ${duration * 1000});`,
        file,
        String(booster.pid),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let sent = 0;
    signaller.stdout!.on('data', (d) => (sent += String(d).length));
    const l = wrk(`${url}/`, { connections, durationS: duration });
    await new Promise((res) => signaller.once('exit', res));
    reloads += sent;
    reloading.push(l);
    process.stderr.write(`reloading round ${r + 1}: ${l.rps.toFixed(0)} req/s, ${l.errors} errors, ${sent} SIGHUPs\n`);
  }
  await waitFor(async () => applied >= reloads, 'every reload applied', 20_000).catch(() => {});
  const st = await status();
  epochs.push(st.epoch);
  if (st.role !== 'active') epochs.push(-1);
} finally {
  for (const c of children.reverse()) await c.kill();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}

const row = (name: string, xs: WrkFigures[]) =>
  `${name.padEnd(22)} ${median(xs.map((x) => x.rps))
    .toFixed(0)
    .padStart(7)}   ${median(xs.map((x) => x.p50))
    .toFixed(2)
    .padStart(6)}   ${median(xs.map((x) => x.p99))
    .toFixed(2)
    .padStart(7)}   ${xs.reduce((n, x) => n + x.errors, 0)}`;
console.log(
  `\nbooster-reload: one Booster with 2 data-plane workers, wrk -t1 -c${connections} -d${duration}s GET; median of ${rounds} interleaved rounds; a SIGHUP every ${everyMs} ms in the reloading rounds`,
);
console.log('rounds                   req/s   p50 ms    p99 ms   errors (all rounds)');
console.log(row('quiet', quiet));
console.log(row(`reloading`, reloading));
console.log(
  `reloads sent ${reloads}, applied (log lines) ${applied}; epoch ${epochs[0]} before, ${epochs[1]} after${epochs.length > 2 ? ' (NOT ACTIVE after)' : ''}; reloading / quiet req/s = ${(median(reloading.map((x) => x.rps)) / median(quiet.map((x) => x.rps))).toFixed(2)}`,
);
