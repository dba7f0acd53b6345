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
