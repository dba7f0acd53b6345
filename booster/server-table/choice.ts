import type { Heartbeat } from '../../common/protocol/messages.js';

/**
 * The choice of a server for one request (policy only; the table keeps the entries and asks
 * here): power of two choices by weight, slow start, and the panic floor. Nothing is stored.
 */

/** What the choice reads of a server. */
export interface Candidate {
  readonly id: string;
  readonly weight: number;
  readonly inflight: number;
  readonly heartbeat: Heartbeat | null;
  /** When the server last became routable (0: not since this process started). */
  readonly upSince: number;
}

/** A server, or why there is none: every candidate is at its limit (wait for a slot), or none is left. */
export type Choice<T> = { readonly kind: 'server'; readonly server: T } | { readonly kind: 'no-room' } | { readonly kind: 'no-server' };

const NO_ROOM = { kind: 'no-room' } as const;
const NO_SERVER = { kind: 'no-server' } as const;

/** What the table hands the choice: its routable servers and how to read them. */
export interface ChoiceInput<T extends Candidate> {
  /** Up and licensed. */
  routable(): readonly T[];
  /** The panic floor: licensed servers that are only ejected, used when none is routable. */
  ejected(): readonly T[];
  /** Under the fixed in-flight maximum and the adaptive limit. */
  hasRoom(e: T): boolean;
  clock(): number;
  slowStartMs: number;
}

/**
 * Power of two choices: two distinct candidates drawn by weight, the lower of
 * (reported load + local in-flight + 1) / weight wins. A server in slow start is taken only
 * with probability ramp, so its share grows smoothly. Servers at the in-flight limit are
 * skipped, and so are those at their adaptive limit. When every live server is ejected, the
 * ejected ones are used anyway (panic floor). `exclude`: servers this request already tried.
 */
export function choose<T extends Candidate>(input: ChoiceInput<T>, exclude: ReadonlySet<string> | undefined, random: () => number): Choice<T> {
  let pool = input.routable();
  if (pool.length === 0) pool = input.ejected();
  if (exclude?.size) pool = pool.filter((e) => !exclude.has(e.id));
  if (pool.length === 0) return NO_SERVER;
  let free = pool;
  if (!pool.every((e) => input.hasRoom(e))) {
    free = pool.filter((e) => input.hasRoom(e));
    if (free.length === 0) return NO_ROOM;
  }
  if (free.length === 1) return { kind: 'server', server: free[0] };
  const a = draw(free, random, null);
  const b = draw(free, random, a);
  const now = input.clock();
  const sa = (reportedLoad(a) + a.inflight + 1) / a.weight;
  const sb = (reportedLoad(b) + b.inflight + 1) / b.weight;
  let first = sa < sb ? a : sb < sa ? b : random() < 0.5 ? a : b;
  const second = first === a ? b : a;
  const ramp = rampOf(first, now, input.slowStartMs);
  if (ramp < 1 && random() >= ramp) first = second;
  return { kind: 'server', server: first };
}

function draw<T extends Candidate>(pool: readonly T[], random: () => number, not: T | null): T {
  let total = 0;
  for (const e of pool) if (e !== not) total += e.weight;
  let r = random() * total;
  for (const e of pool) {
    if (e === not) continue;
    r -= e.weight;
    if (r < 0) return e;
  }
  return pool[pool.length - 1] === not ? pool[pool.length - 2] : pool[pool.length - 1];
}

/** Slow-start factor in (0, 1]: 10 % → 100 % over slowStartMs after the server became routable. */
export function rampOf(e: Candidate, now: number, slowStartMs: number): number {
  if (slowStartMs <= 0 || e.upSince === 0) return 1;
  const f = (now - e.upSince) / slowStartMs;
  return f >= 1 ? 1 : Math.max(0.1, f);
}

/** Reported load: what the server said in its last heartbeat. */
export function reportedLoad(e: Candidate): number {
  const hb = e.heartbeat;
  if (!hb) return 0;
  return hb.inflight + hb.dbPool.waiting + hb.eventLoopLagMs / 10;
}
