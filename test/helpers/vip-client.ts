// A client that keeps raising tickets against one address (the VIP), run as its own process in
// its own network namespace by test/booster/leadership/vip-owner.test.ts and bench/booster-vip-failover.ts.
// Every ticket carries an Idempotency-Key; a failed attempt is retried once with the same key
// after RETRY_MS. Prints one line per outcome: `ack <ms> <key> <took ms>`, `failed <ms> <key>`, `retry <ms>`.
import { randomUUID } from 'node:crypto';

const target = process.env.TARGET!;
const workers = Number(process.env.WORKERS ?? 4);
const retryMs = Number(process.env.RETRY_MS ?? 300);
const form = process.env.FORM ?? 'it-request';
let running = true;
process.on('SIGTERM', () => (running = false));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const out = (line: string) => process.stdout.write(`${line}\n`);

async function login(): Promise<string> {
  for (;;) {
    try {
      const r = await fetch(`${target}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: process.env.LOGIN_USER, password: process.env.LOGIN_PASSWORD }),
        signal: AbortSignal.timeout(2000),
      });
      if (r.status === 200) return ((await r.json()) as { token: string }).token;
      await r.arrayBuffer();
    } catch {
      // not reachable yet
    }
    await sleep(200);
  }
}

let lastWhy = '';
/** How long the last attempt took (printed with each ack: a slow ack shows where a gap went). */
let lastMs = 0;
async function attempt(token: string, key: string): Promise<boolean> {
  const started = Date.now();
  try {
    const r = await fetch(`${target}/api/forms/${form}/tickets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'idempotency-key': key },
      body: JSON.stringify({ data: { title: key, category: 'software', amount: 1 } }),
      signal: AbortSignal.timeout(2000),
    });
    const body = await r.text();
    lastMs = Date.now() - started;
    lastWhy = `${r.status} ${body.slice(0, 80).replace(/\s+/g, ' ')} after ${lastMs} ms`;
    return r.status === 200 || r.status === 201;
  } catch (err) {
    // reset, refused or timed out, and how long the attempt took (a lost SYN shows as ~1000/3000 ms)
    lastWhy = `${String((err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name)} after ${Date.now() - started} ms`;
    return false;
  }
}

const token = await login();
out('ready');
await Promise.all(
  Array.from({ length: workers }, async () => {
    while (running) {
      const key = randomUUID();
      if (await attempt(token, key)) {
        out(`ack ${Date.now()} ${key} ${lastMs}`);
        continue;
      }
      out(`retry ${Date.now()} ${lastWhy}`);
      await sleep(retryMs);
      if (await attempt(token, key)) out(`ack ${Date.now()} ${key} ${lastMs}`);
      else {
        out(`failed ${Date.now()} ${key} ${lastWhy}`);
        await sleep(50);
      }
    }
  }),
);
out('done');
