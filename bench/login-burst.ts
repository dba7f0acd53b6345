// bench/login-burst: a burst of parallel logins on ONE app server (`omflow server`, a real child
// process), for the password-hash parameters (scrypt, OWASP): each login verifies a scrypt hash at
// N=2^17, r=8, p=1 (128 MiB each). For each OMFLOW_SERVER_PASSWORD_HASHES value it prints the
// login latencies (p50/p99/max), the server's peak RSS above its idle RSS, and the p99 of
// /healthz and of an authenticated API read polled during the burst (does the rest of the server
// stay responsive?). Database: an embedded PostgreSQL (fsync off).
// Usage: flock /work/coord/bench.lock npx tsx bench/login-burst.ts [--burst 32] [--rounds 2] [--hashes 1,2,4]
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Pool } from 'undici';
import { createDatabase } from '../common/db/create-database.js';
import { migrateLatest } from '../common/db/migrate.js';
import { createPasswordHasher } from '../server/features/users/passwords.js';
import { seed } from '../server/seed.js';
import { dbConfig } from '../test/helpers/db.js';
import { freePort, ROOT, rssMb, SECRET, startEmbeddedPostgres } from './booster-lib.js';

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
const burst = Number(flag('burst') ?? 32);
const rounds = Number(flag('rounds') ?? 2);
const hashesList = (flag('hashes') ?? '1,2,4').split(',').map(Number);
const PASSWORD = 'bench-login-pass';

const pg = await startEmbeddedPostgres();
const db = createDatabase(dbConfig(pg.url, { poolMax: 2 }));
await migrateLatest(db.knex);
await seed(db, { adminUser: 'bench', adminPassword: 'bench-password', demo: false });
// One hash at today's parameters for every bench user: each login then costs exactly one verify.
const hash = await createPasswordHasher({ concurrency: 1 }).hash(PASSWORD);
const now = new Date();
const users = Array.from({ length: burst }, (_, i) => `burst-${i}`);
await db.knex('users').whereIn('username', users).delete();
await db.knex('users').insert(
  users.map((username) => ({
    username,
    display_name: username,
    password_hash: hash,
    role: 'user',
    locale: 'en',
    disabled: false,
    failed_logins: 0,
    created_at: now,
    updated_at: now,
  })),
);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? Number.NaN;
};

async function cell(
  hashes: number,
): Promise<{ p50: number; p99: number; max: number; peakMb: number; idleMb: number; healthP99: number; apiP99: number; failed: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(ROOT, 'common/bin/omflow.mjs'), 'server'], {
    env: {
      PATH: process.env.PATH,
      OMFLOW_DB_URL: pg.url,
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_NODE_ID: 'bench',
      OMFLOW_LOG_LEVEL: 'warn',
      OMFLOW_SERVER_PORT: String(port),
      OMFLOW_SERVER_PASSWORD_HASHES: String(hashes),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('listening on')) resolve();
      });
      child.on('exit', () => reject(new Error('server exited')));
    });
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: burst + 4 });
    const login = async (username: string) => {
      const r = await pool.request({
        path: '/api/auth/login',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password: PASSWORD }),
      });
      const body = (await r.body.json()) as { token?: string };
      return { status: r.statusCode, token: body.token };
    };
    const { token } = await login('burst-0');
    const auth = { authorization: `Bearer ${token}` };
    await new Promise((r) => setTimeout(r, 1500));
    const idleMb = rssMb(child.pid!);
    let peakMb = idleMb;
    const rss = setInterval(() => (peakMb = Math.max(peakMb, rssMb(child.pid!))), 10);
    const health: number[] = [];
    const api: number[] = [];
    let bursting = true;
    const poll = async (path: string, headers: Record<string, string>, into: number[]) => {
      while (bursting) {
        const t0 = performance.now();
        const r = await pool.request({ path, method: 'GET', headers });
        await r.body.dump();
        into.push(performance.now() - t0);
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    const pollers = [poll('/healthz', {}, health), poll('/api/auth/me', auth, api)];
    const latencies: number[] = [];
    let failed = 0;
    await Promise.all(
      users.map(async (u) => {
        const t0 = performance.now();
        const r = await login(u);
        if (r.status === 200) latencies.push(performance.now() - t0);
        else failed++;
      }),
    );
    bursting = false;
    await Promise.all(pollers);
    clearInterval(rss);
    await pool.close();
    return {
      p50: pct(latencies, 0.5),
      p99: pct(latencies, 0.99),
      max: Math.max(...latencies),
      peakMb,
      idleMb,
      healthP99: pct(health, 0.99),
      apiP99: pct(api, 0.99),
      failed,
    };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
  }
}

try {
  console.log(`login-burst: ${burst} parallel logins, scrypt N=2^17 r=8 p=1, one app server, ${rounds} round(s) per setting`);
  for (let round = 1; round <= rounds; round++)
    for (const hashes of hashesList) {
      const c = await cell(hashes);
      console.log(
        `  OMFLOW_SERVER_PASSWORD_HASHES=${hashes} round ${round}: login p50 ${c.p50.toFixed(0)} ms, p99 ${c.p99.toFixed(0)} ms, max ${c.max.toFixed(0)} ms` +
          `${c.failed ? `, ${c.failed} failed` : ''}; RSS ${c.idleMb.toFixed(0)} → peak ${c.peakMb.toFixed(0)} MB (+${(c.peakMb - c.idleMb).toFixed(0)}); ` +
          `during the burst /healthz p99 ${c.healthP99.toFixed(0)} ms, /api/auth/me p99 ${c.apiP99.toFixed(0)} ms`,
      );
    }
} finally {
  await db.destroy();
  await pg.stop();
}
