// Runs on the lab's client host (its own container on the lab bridge): logs in through TARGET
// (the VIP) and raises demo tickets with an Idempotency-Key, WORKERS at a time; a failed attempt
// is retried once with the same key after RETRY_MS. Prints one JSON line per outcome:
// {"ack":key,"number":…,"startedAt":ms,"at":ms} or {"error":key,"why":…,"at":ms}, and
// {"ready":true} once logged in. COUNT > 0 stops after that many tickets; otherwise it runs until
// its stdin closes (the lab closes it to stop the load).
import { randomUUID } from 'node:crypto';

const target = process.env.TARGET ?? '';
const workers = Number(process.env.WORKERS ?? 4);
const retryMs = Number(process.env.RETRY_MS ?? 300);
const count = Number(process.env.COUNT ?? 0);
const label = process.env.LABEL ?? 'lab';
let running = true;
let started = 0;
process.stdin.resume();
process.stdin.on('end', () => (running = false));
process.stdin.on('close', () => (running = false));

const out = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function login(): Promise<string> {
  const until = Date.now() + 120_000;
  for (;;) {
    try {
      const r = await fetch(`${target}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: process.env.LOGIN_USER, password: process.env.LOGIN_PASSWORD }),
        signal: AbortSignal.timeout(3000),
      });
      const body = (await r.json().catch(() => ({}))) as { token?: string };
      if (r.status === 200 && body.token) return body.token;
    } catch {
      // not reachable yet
    }
    if (Date.now() > until) throw new Error(`cannot log in at ${target}`);
    await sleep(300);
  }
}

async function attempt(token: string, key: string): Promise<{ number: string } | { why: string }> {
  const t = Date.now();
  try {
    const r = await fetch(`${target}/api/forms/it-request/tickets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'idempotency-key': key },
      body: JSON.stringify({ data: { title: `lab ${key}`, category: 'software', amount: 1000 } }),
      signal: AbortSignal.timeout(5000),
    });
    const text = await r.text();
    if (r.status === 200 || r.status === 201) return { number: String((JSON.parse(text) as { number: string }).number) };
    return { why: `HTTP ${r.status} ${/"code":"([A-Z_]+)"/.exec(text)?.[1] ?? ''}`.trim() };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string } };
    return { why: `${e.cause?.code ?? e.name} after ${Date.now() - t} ms` };
  }
}

const token = await login();
out({ ready: true });
await Promise.all(
  Array.from({ length: workers }, async () => {
    while (running && (count === 0 || started < count)) {
      started++;
      const key = `${label}-${randomUUID()}`;
      const startedAt = Date.now();
      let r = await attempt(token, key);
      if ('why' in r) {
        out({ firstFailure: key, why: r.why, at: Date.now() });
        await sleep(retryMs);
        r = await attempt(token, key);
      }
      if ('number' in r) out({ ack: key, number: r.number, startedAt, at: Date.now() });
      else out({ error: key, why: r.why, at: Date.now() });
      if (count === 0) await sleep(20);
    }
  }),
);
process.exit(0);
