/**
 * Admission under database pressure (ADR 0011; policy only: the front router answers the 503). Each app
 * server reports its database round-trip time and pool wait in its heartbeat. When every
 * routable server reports one of them at or above the threshold, the database (shared by all)
 * is the bottleneck and new work would only queue until it times out: the share of new,
 * non-keyed work admitted is cut at each adjustment while the pressure lasts (by half, or by
 * threshold/figure when that is smaller) and grows back by a quarter at each adjustment without
 * it (multiplicative decrease, additive increase); without routable servers it is kept, so
 * the admitted load settles near what the database sustains instead of oscillating between all
 * and nothing. Keyed retries (Idempotency-Key) and health checks always pass. One server under
 * pressure while another is not sheds nothing: the picker's load score steers work away.
 * Admission is deterministic (a credit counter, no randomness): with share s, s of every
 * request passes.
 */
export interface DbPressureOptions {
  /** Threshold of reported round-trip time or pool wait (ms); 0 turns shedding off. */
  dbPressureMs: number;
  /** Seconds in Retry-After of a shed request. */
  dbPressureRetryAfterS: number;
}

/** What the policy reads of a server: its last heartbeat's database figures. */
export interface DbPressureSource {
  readonly heartbeat: { readonly db?: { readonly rttMs: number; readonly poolWaitMs: number } } | null;
}

export type RequestKind = 'keyed' | 'health' | 'new';

/** Lowest admitted share: a trickle of new work still reaches the servers, so recovery is seen. */
export const MIN_ADMIT_SHARE = 1 / 16;
/** How often the admitted share is adjusted (about one heartbeat). */
export const ADJUST_EVERY_MS = 1000;
const INCREASE = 0.25;

export class DbPressurePolicy {
  #share = 1;
  #credit = 0;
  #adjustedAt = Number.NEGATIVE_INFINITY;
  #pressured = false;
  #shed = 0;

  constructor(
    private readonly opts: DbPressureOptions,
    /** The routable servers now. */
    private readonly servers: () => readonly DbPressureSource[],
    private readonly clock: () => number,
  ) {}

  /**
   * How far over the threshold the cluster is: the least pressured routable server's worse figure
   * over the threshold (≥ 1: under pressure). 0 when a server is below it or reports nothing;
   * null without routable servers (nothing to learn: no adjustment).
   */
  severity(): number | null {
    const t = this.opts.dbPressureMs;
    if (t <= 0) return 0;
    const list = this.servers();
    if (list.length === 0) return null;
    let least = Number.POSITIVE_INFINITY;
    for (const s of list) {
      const db = s.heartbeat?.db;
      const worse = db ? Math.max(db.rttMs, db.poolWaitMs) : 0;
      if (worse < t) return 0;
      least = Math.min(least, worse);
    }
    return least / t;
  }

  /** Under pressure: every routable server reports round-trip time or pool wait at or above the threshold. */
  pressuredNow(): boolean {
    return (this.severity() ?? 0) >= 1;
  }

  #adjust(): void {
    const now = this.clock();
    const periods = Math.min(4, Math.floor((now - this.#adjustedAt) / ADJUST_EVERY_MS));
    if (periods < 1) return;
    this.#adjustedAt = now;
    const severity = this.severity();
    // No routable server: nothing is learnt (a server taken out by the overload must not come
    // back to a flood because the share grew back while it was away).
    if (severity === null) return;
    this.#pressured = severity >= 1;
    // Under pressure the share shrinks by at least half, more the further over the threshold
    // (4 s of pool wait at 500 ms: to an eighth at once); idle periods without pressure count as
    // periods of recovery.
    if (this.#pressured) this.#share = Math.max(MIN_ADMIT_SHARE, this.#share * Math.min(0.5, 1 / severity));
    else this.#share = Math.min(1, this.#share + INCREASE * periods);
  }

  /** True: let the request in. False: answer 503 BOOSTER_ERR_DB_PRESSURE with Retry-After. */
  admit(kind: RequestKind): boolean {
    if (this.opts.dbPressureMs <= 0 || kind !== 'new') return true;
    this.#adjust();
    if (this.#share >= 1) return true;
    this.#credit += this.#share;
    if (this.#credit >= 1) {
      this.#credit -= 1;
      return true;
    }
    this.#shed++;
    return false;
  }

  /** Share of new non-keyed work admitted now (1: no shedding). */
  get share(): number {
    return this.#share;
  }

  get pressured(): boolean {
    return this.#pressured;
  }

  /** Requests shed since start. */
  get shed(): number {
    return this.#shed;
  }

  get retryAfterSeconds(): number {
    return this.opts.dbPressureRetryAfterS;
  }
}

/** Which kind a data-plane request is for the pressure policy: keyed retries and health checks always pass. */
export function requestKind(url: string, idempotencyKey: string | string[] | undefined): RequestKind {
  if (idempotencyKey !== undefined && idempotencyKey !== '') return 'keyed';
  if (/^\/(healthz|readyz)(\/|$|\?)/.test(url)) return 'health';
  return 'new';
}
