/**
 * Adaptive concurrency limit of one app server: how many proxied requests may wait for its
 * response headers at once. Learnt from each response's time to headers, the overload signal
 * inside the request, seen at once (a heartbeat's database figures come a second late, and by
 * then the backlog sits in the server, where its health checks wait behind it). Requests over the
 * limit wait in the booster's queue, whose wait is bounded, instead of in the server, whose is not.
 *
 * A gradient limit in the manner of Envoy's adaptive concurrency filter and Netflix's
 * concurrency-limits:
 * - The no-load time is measured in a probe: for one window the limit drops to `min`, and the
 *   median time to headers of requests sent while fewer than `min` were waiting is the baseline
 *   (lowered by any later window's median that is lower). Probes run at start, once more
 *   `secondProbeAfterMs` later (the first one often meets the burst that started the traffic),
 *   then every `probeEveryMs`: a baseline learnt only from loaded windows creeps up with the load
 *   it should detect.
 * - Per window (≥ `windowMs` and ≥ `minSamples` answers) the median time to headers is compared
 *   with `tolerance` × the baseline (and at least `minQueueDelayMs` above it, so jitter of
 *   sub-millisecond answers is not overload). Above it the limit is cut by the ratio of the two,
 *   by a tenth at least and by a quarter at most (deeper cuts fall below the server's knee and
 *   lose throughput); otherwise, when the limit was reached in the window, it grows by a tenth
 *   (at least 1).
 * Medians, not means: one slow report among quick answers is not overload. Only time to headers
 * counts, so a long download or an SSE stream holds no slot.
 */
export interface ConcurrencyLimitOptions {
  initial: number;
  min: number;
  max: number;
  windowMs: number;
  minSamples: number;
  tolerance: number;
  minQueueDelayMs: number;
  probeEveryMs: number;
  /** A probe that gathers too few samples in this time ends without a new baseline. */
  probeMaxMs: number;
  /** The first probe often meets the burst that started the traffic (new connections, a busy event loop): a second one follows soon after. */
  secondProbeAfterMs: number;
}

export const DEFAULT_LIMIT_OPTIONS: Omit<ConcurrencyLimitOptions, 'max'> = {
  initial: 20,
  min: 4,
  windowMs: 100,
  minSamples: 8,
  tolerance: 1.5,
  minQueueDelayMs: 10,
  probeEveryMs: 60_000,
  probeMaxMs: 1000,
  secondProbeAfterMs: 2000,
};

const MAX_SAMPLES = 64;

export class ConcurrencyLimit {
  #limit: number;
  readonly #samples = new Float64Array(MAX_SAMPLES);
  #count = 0;
  #reached = false;
  #windowStart: number;
  #baseline = Number.POSITIVE_INFINITY;
  /** The limit to go back to after the probe; null: not probing. */
  #resumeAt: number | null;
  #nextProbeAt = 0;
  #probeFirstAt: number | null = null;
  #probes = 0;

  private readonly opts: ConcurrencyLimitOptions;

  constructor(opts: ConcurrencyLimitOptions, now: number) {
    this.opts = { ...opts, min: Math.min(opts.min, opts.max) };
    this.#limit = this.opts.min;
    this.#resumeAt = Math.min(opts.max, Math.max(opts.min, opts.initial));
    this.#windowStart = now;
  }

  /** Requests that may wait for this server's headers at once. */
  get limit(): number {
    return Math.floor(this.#limit);
  }

  /** The no-load time to headers (ms); Infinity until the first probe ends. */
  get baselineMs(): number {
    return this.#baseline;
  }

  get probing(): boolean {
    return this.#resumeAt !== null;
  }

  /** One response's time to headers (ms), and how many were waiting for headers when it was sent. */
  sample(ms: number, pendingAtSend: number, now: number): void {
    if (this.#resumeAt !== null) {
      // The probe's time runs from its first answer: an idle server is not a failed probe.
      if (this.#probeFirstAt === null) this.#probeFirstAt = now;
      if (pendingAtSend < this.opts.min) this.#add(ms);
      if (now - this.#probeFirstAt >= this.opts.windowMs && this.#count >= this.opts.minSamples) this.#endProbe(now, this.#median());
      else if (now - this.#probeFirstAt >= this.opts.probeMaxMs) this.#endProbe(now, null);
      return;
    }
    this.#add(ms);
    if (pendingAtSend + 1 >= this.limit) this.#reached = true;
    if (now - this.#windowStart >= this.opts.windowMs && this.#count >= this.opts.minSamples) this.#adjust(now);
  }

  #add(ms: number): void {
    if (this.#count < MAX_SAMPLES) this.#samples[this.#count] = ms;
    else this.#samples[Math.floor(Math.random() * MAX_SAMPLES)] = ms; // a fair median of a busy window
    this.#count++;
  }

  #median(): number {
    const n = Math.min(this.#count, MAX_SAMPLES);
    return this.#samples.subarray(0, n).sort()[n >> 1];
  }

  #endProbe(now: number, median: number | null): void {
    if (median !== null) this.#baseline = median;
    this.#limit = this.#resumeAt ?? this.#limit;
    this.#resumeAt = null;
    this.#probeFirstAt = null;
    if (median !== null) this.#probes++;
    // Too quiet to measure: try again soon rather than in a minute.
    const next = this.#probes === 1 ? this.opts.secondProbeAfterMs : Number.isFinite(this.#baseline) ? this.opts.probeEveryMs : 10 * this.opts.probeMaxMs;
    this.#nextProbeAt = now + next;
    this.#newWindow(now);
  }

  #newWindow(now: number): void {
    this.#count = 0;
    this.#reached = false;
    this.#windowStart = now;
  }

  #adjust(now: number): void {
    const o = this.opts;
    const median = this.#median();
    if (median < this.#baseline) this.#baseline = median;
    const base = this.#baseline;
    const allowed = Math.max(base * o.tolerance, base + o.minQueueDelayMs);
    if (median > allowed) this.#limit = Math.max(o.min, this.#limit * Math.min(0.9, Math.max(0.75, allowed / median)));
    else if (this.#reached) this.#limit = Math.min(o.max, this.#limit + Math.max(1, this.#limit / 10));
    this.#newWindow(now);
    if (now >= this.#nextProbeAt) {
      this.#resumeAt = this.#limit;
      this.#limit = o.min;
      this.#count = 0;
    }
  }
}
