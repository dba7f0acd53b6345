import { Agent, request } from 'undici';

/**
 * Client load through a pair of boosters the way a load balancer or DNS health check sends it:
 * every `checkMs` each booster's `/_booster/active` is asked; a booster is taken after one 200
 * and dropped after two failed checks in a row (HAProxy's `rise 1 fall 2`); each request goes to
 * the booster in use, and moves only when that one is dropped. Requests are never retried, so
 * every failure the clients would see is counted. Used by test/booster/leadership/switchover.test.ts
 * and bench/booster-switchover.ts.
 */
export interface RoutedRequest {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface LoadFailure {
  at: number;
  booster: string | null;
  why: string;
}

export interface RoutedLoad {
  /** Booster in use now (null: none was ever up). */
  target(): string | null;
  /** When the booster in use changed (ms since epoch) and to which. */
  readonly moves: { at: number; to: string }[];
  readonly failures: LoadFailure[];
  /** Answered 2xx, per booster that answered. */
  readonly answered: Map<string, number>;
  sent(): number;
  stop(): Promise<void>;
}

export function startRoutedLoad(opts: {
  boosters: string[];
  clients: number;
  checkMs?: number;
  /** The i-th request of client c. */
  next: (client: number, i: number) => RoutedRequest;
  /** A 2xx answer's body (e.g. to record created tickets). */
  onAnswer?: (booster: string, status: number, body: string, req: RoutedRequest) => void;
}): RoutedLoad {
  const checkMs = opts.checkMs ?? 50;
  const agent = new Agent({ keepAliveTimeout: 10_000, connections: opts.clients * 2 });
  const up = new Map<string, { up: boolean; fails: number }>(opts.boosters.map((b) => [b, { up: false, fails: 0 }]));
  let current: string | null = null;
  let stopped = false;
  let count = 0;
  const moves: { at: number; to: string }[] = [];
  const failures: LoadFailure[] = [];
  const answered = new Map<string, number>();

  const choose = () => {
    if (current && up.get(current)!.up) return;
    const next = opts.boosters.find((b) => up.get(b)!.up);
    if (next && next !== current) {
      current = next;
      moves.push({ at: Date.now(), to: next });
    }
  };

  async function check(b: string): Promise<void> {
    let ok = false;
    try {
      const r = await request(`${b}/_booster/active`, { dispatcher: agent, signal: AbortSignal.timeout(Math.max(500, checkMs * 4)) });
      await r.body.dump();
      ok = r.statusCode === 200;
    } catch {
      ok = false;
    }
    const s = up.get(b)!;
    if (ok) {
      s.up = true;
      s.fails = 0;
    } else if (++s.fails >= 2) s.up = false;
  }

  const checker = (async () => {
    while (!stopped) {
      await Promise.all(opts.boosters.map(check));
      choose();
      await new Promise((r) => setTimeout(r, checkMs));
    }
  })();

  async function client(c: number): Promise<void> {
    for (let i = 0; !stopped; i++) {
      const target = current;
      if (!target) {
        await new Promise((r) => setTimeout(r, 10));
        i--;
        continue;
      }
      const req = opts.next(c, i);
      count++;
      try {
        const r = await request(target + req.path, {
          method: req.method,
          headers: req.headers,
          body: req.body,
          dispatcher: agent,
          signal: AbortSignal.timeout(10_000),
        });
        const text = await r.body.text();
        if (r.statusCode >= 200 && r.statusCode < 300) {
          answered.set(target, (answered.get(target) ?? 0) + 1);
          opts.onAnswer?.(target, r.statusCode, text, req);
        } else failures.push({ at: Date.now(), booster: target, why: `HTTP ${r.statusCode} ${text.slice(0, 120)}` });
      } catch (err) {
        failures.push({ at: Date.now(), booster: target, why: (err as { code?: string }).code ?? (err as Error).message });
      }
    }
  }

  const clients = Array.from({ length: opts.clients }, (_, c) => client(c));
  return {
    target: () => current,
    moves,
    failures,
    answered,
    sent: () => count,
    async stop() {
      stopped = true;
      await Promise.all([checker, ...clients]);
      await agent.close();
    },
  };
}
