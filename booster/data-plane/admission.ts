/**
 * Admission for the data plane: the bounded queue of requests waiting for a server slot, and
 * the retry budget. Mechanism with no knowledge of servers or HTTP; the timer functions are
 * injected so tests drive time themselves.
 */
export interface AdmissionOptions {
  queueSize: number;
  queueTimeoutMs: number;
  /** Every request earns this share of a retry (percent). */
  retryBudgetPercent: number;
}

export interface AdmissionTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Monotonic ms (the standing-queue rule). */
  now(): number;
}

const realTimers: AdmissionTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  now: () => performance.now(),
};

/**
 * Standing queue (CoDel, as Facebook applies it to server queues): when no request has left the
 * queue within STANDING_TARGET_MS of joining it for STANDING_INTERVAL_MS, the queue is not
 * absorbing a burst but holding an overload; new waiters then wait at most STANDING_INTERVAL_MS
 * instead of the queue timeout. A FIFO queue in overload otherwise serves every request after
 * nearly the full timeout, and the p99 becomes the timeout; this way it stays near the interval.
 * A burst that drains quickly keeps the long wait; one that needs more than the interval to drain
 * is an overload too, and its tail is told to come back (503 with Retry-After).
 */
export const STANDING_TARGET_MS = 50;
export const STANDING_INTERVAL_MS = 500;

/** Retries always allowed per refill (once a second), so a lone failure can still retry. */
export const RETRY_FLOOR = 10;
const RETRY_CAP = 100;

type Waiter = { resolve: (ok: boolean) => void; timer: unknown; at: number };

export class Admission {
  readonly #queue: Waiter[] = [];
  #retryTokens = RETRY_FLOOR;
  #closed = false;
  /** Last time the queue was empty or a waiter left it within STANDING_TARGET_MS. */
  #drainingAt: number;

  constructor(
    private readonly opts: AdmissionOptions,
    /** Told the queue length whenever it changes (the metrics gauge). */
    private readonly onQueueLength: (n: number) => void = () => {},
    private readonly timers: AdmissionTimers = realTimers,
  ) {
    this.#drainingAt = timers.now();
  }

  /** The queue has held waiters that waited too long for a whole interval (see STANDING_INTERVAL_MS). */
  get standing(): boolean {
    return this.#queue.length > 0 && this.timers.now() - this.#drainingAt > STANDING_INTERVAL_MS;
  }

  get queued(): number {
    return this.#queue.length;
  }

  get queueTimeoutMs(): number {
    return this.opts.queueTimeoutMs;
  }

  /**
   * Waits for a free slot: resolves true when woken, false on timeout or close; null when the
   * queue is full. A request woken but beaten to the slot waits again at the head (`front`) for
   * what is left of its timeout (`timeoutMs`), so re-queueing neither loses its turn nor extends its
   * wait; `since` is when it first joined (its time in the queue counts from there).
   */
  waitForSlot(timeoutMs = this.opts.queueTimeoutMs, front = false, since?: number): Promise<boolean> | null {
    if (this.#closed || (!front && this.#queue.length >= this.opts.queueSize)) return null;
    const now = this.timers.now();
    if (this.#queue.length === 0) this.#drainingAt = now;
    else if (this.standing) timeoutMs = Math.min(timeoutMs, STANDING_INTERVAL_MS);
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        resolve,
        at: since ?? now,
        timer: this.timers.setTimeout(() => {
          const i = this.#queue.indexOf(w);
          if (i >= 0) this.#queue.splice(i, 1);
          this.onQueueLength(this.#queue.length);
          resolve(false);
        }, timeoutMs),
      };
      if (front) this.#queue.unshift(w);
      else this.#queue.push(w);
      this.onQueueLength(this.#queue.length);
    });
  }

  /** A server slot may be free: wake the oldest waiter (it picks again; it may queue again). */
  release(): void {
    const w = this.#queue.shift();
    if (w) {
      const now = this.timers.now();
      if (now - w.at <= STANDING_TARGET_MS || this.#queue.length === 0) this.#drainingAt = now;
      this.timers.clearTimeout(w.timer);
      this.onQueueLength(this.#queue.length);
      w.resolve(true);
    }
  }

  /** Every request earns a share of a retry, up to a cap. */
  earn(): void {
    this.#retryTokens = Math.min(this.#retryTokens + this.opts.retryBudgetPercent / 100, RETRY_CAP);
  }

  /** Takes one retry from the budget; false when it is spent. */
  spendRetry(): boolean {
    if (this.#retryTokens < 1) return false;
    this.#retryTokens--;
    return true;
  }

  /** Called once a second: at least RETRY_FLOOR retries per second are always allowed. */
  refillFloor(): void {
    this.#retryTokens = Math.max(this.#retryTokens, RETRY_FLOOR);
  }

  get retryTokens(): number {
    return this.#retryTokens;
  }

  /** Refuses new waiters and lets every waiting one go with false. Idempotent. */
  close(): void {
    this.#closed = true;
    for (const w of this.#queue.splice(0)) {
      this.timers.clearTimeout(w.timer);
      w.resolve(false);
    }
    this.onQueueLength(0);
  }
}

/**
 * Admission under database pressure (policy only: the front door answers the 503). Each app
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
