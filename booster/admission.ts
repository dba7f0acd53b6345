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
}

const realTimers: AdmissionTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Retries always allowed per refill (once a second), so a lone failure can still retry. */
export const RETRY_FLOOR = 10;
const RETRY_CAP = 100;

type Waiter = { resolve: (ok: boolean) => void; timer: unknown };

export class Admission {
  readonly #queue: Waiter[] = [];
  #retryTokens = RETRY_FLOOR;
  #closed = false;

  constructor(
    private readonly opts: AdmissionOptions,
    /** Told the queue length whenever it changes (the metrics gauge). */
    private readonly onQueueLength: (n: number) => void = () => {},
    private readonly timers: AdmissionTimers = realTimers,
  ) {}

  get queued(): number {
    return this.#queue.length;
  }

  /** Waits for a free slot: resolves true when woken, false on timeout or close; null when the queue is full. */
  waitForSlot(): Promise<boolean> | null {
    if (this.#closed || this.#queue.length >= this.opts.queueSize) return null;
    return new Promise<boolean>((resolve) => {
      const w: Waiter = {
        resolve,
        timer: this.timers.setTimeout(() => {
          const i = this.#queue.indexOf(w);
          if (i >= 0) this.#queue.splice(i, 1);
          this.onQueueLength(this.#queue.length);
          resolve(false);
        }, this.opts.queueTimeoutMs),
      };
      this.#queue.push(w);
      this.onQueueLength(this.#queue.length);
    });
  }

  /** A server slot may be free: wake the oldest waiter (it picks again; it may queue again). */
  release(): void {
    const w = this.#queue.shift();
    if (w) {
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
