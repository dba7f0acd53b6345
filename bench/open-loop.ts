// Open-loop load for the overload benches: every arrival is sent at its scheduled time whatever
// the answers do, and latency counts from that time (no coordinated omission).
import type { Dispatcher, Pool } from 'undici';

/** Outstanding requests the generator allows; beyond it an arrival is counted as dropped by the client. */
const MAX_OUTSTANDING = 4000;

export interface OpenLoopResult {
  /** Latency (ms) of every answer with the `ok` status, sorted. */
  ok: number[];
  /** p99 of the ok answers by second of sending. */
  p99BySecond: number[];
  /** Other answers by "status code" (code from a JSON body), and client errors by code. */
  others: Map<string, number>;
  dropped: number;
  elapsedS: number;
}

export const pct = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] : Number.NaN);

export async function offerOpenLoop(
  pool: Pool,
  o: { rate: number; seconds: number; request: () => Omit<Dispatcher.RequestOptions, 'origin'>; ok: number },
): Promise<OpenLoopResult> {
  const ok: number[] = [];
  const perSecond: number[][] = Array.from({ length: o.seconds }, () => []);
  const others = new Map<string, number>();
  const count = (k: string) => others.set(k, (others.get(k) ?? 0) + 1);
  let dropped = 0;
  let outstanding = 0;
  const inflight: Promise<void>[] = [];
  const t0 = performance.now();
  const total = Math.round(o.rate * o.seconds);
  const send = (scheduled: number) => {
    if (outstanding >= MAX_OUTSTANDING) {
      dropped++;
      return;
    }
    outstanding++;
    const p = pool
      .request({ ...o.request(), headersTimeout: 120_000, bodyTimeout: 120_000 })
      .then(async (r) => {
        const text = await r.body.text();
        const ms = performance.now() - scheduled;
        if (r.statusCode === o.ok) {
          ok.push(ms);
          perSecond[Math.min(o.seconds - 1, Math.floor((scheduled - t0) / 1000))].push(ms);
          return;
        }
        let code = '';
        try {
          code = (JSON.parse(text) as { code?: string }).code ?? '';
        } catch {
          // not JSON
        }
        count(`${r.statusCode} ${code}`.trim());
      })
      .catch((err: Error & { code?: string }) => void count(err.code ?? err.message))
      .finally(() => outstanding--);
    inflight.push(p);
  };
  // A 5 ms tick sends every arrival whose time has come (setTimeout per arrival would drift).
  let sent = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      while (sent < total && t0 + (sent * 1000) / o.rate <= now) {
        send(t0 + (sent * 1000) / o.rate);
        sent++;
      }
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 5);
  });
  await Promise.all(inflight);
  ok.sort((a, b) => a - b);
  return {
    ok,
    p99BySecond: perSecond.map((s) =>
      pct(
        s.sort((a, b) => a - b),
        0.99,
      ),
    ),
    others,
    dropped,
    elapsedS: (performance.now() - t0) / 1000,
  };
}

export function printOpenLoop(label: string, rate: number, seconds: number, r: OpenLoopResult): void {
  const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
  const pad = ''.padEnd(22);
  const others = [...r.others].map(([k, v]) => `${k}×${v}`).join(', ') || '0';
  console.log(
    `${label.padEnd(22)} offered ${rate.toFixed(0)}/s × ${seconds} s: ok ${r.ok.length} (${(r.ok.length / seconds).toFixed(0)}/s), other answers ${others}${r.dropped ? `, dropped by the client ${r.dropped}` : ''}; all answered after ${r.elapsedS.toFixed(1)} s`,
  );
  console.log(`${pad} ok: p50 ${fmt(pct(r.ok, 0.5))} ms, p99 ${fmt(pct(r.ok, 0.99))} ms, max ${fmt(r.ok.at(-1) ?? Number.NaN)} ms`);
  console.log(`${pad} p99 of ok by second sent: ${r.p99BySecond.map(fmt).join(' ')} ms`);
}
