import { describe, expect, it } from 'vitest';
import { ConcurrencyLimit, type ConcurrencyLimitOptions, DEFAULT_LIMIT_OPTIONS } from '../../../booster/server-table/concurrency-limit.js';

/** The limiter is pure: driven here by a simulated server whose time to headers follows its load. */
const OPTS: ConcurrencyLimitOptions = { ...DEFAULT_LIMIT_OPTIONS, max: 256 };

/** A server that works on `slots` requests at once for `serviceMs` each: with c waiting, c / slots rounds. */
const latencyAt = (c: number, slots: number, serviceMs: number) => serviceMs * Math.max(1, c / slots);

/** One window: `n` responses, each sent into the last free slot (or with `pending` waiting), each taking `ms`; the last one closes the window. */
function window(l: ConcurrencyLimit, now: number, ms: (limit: number) => number, pending?: number, n = 10): number {
  const limit = l.limit;
  for (let i = 0; i < n - 1; i++) l.sample(ms(limit), pending ?? limit - 1, now);
  l.sample(ms(limit), pending ?? limit - 1, now + OPTS.windowMs);
  return now + OPTS.windowMs;
}

describe('ConcurrencyLimit', () => {
  it('settles near the knee of a saturated server, far below the burst it is offered', () => {
    const l = new ConcurrencyLimit(OPTS, 0);
    let now = 0;
    const seen: number[] = [];
    for (let i = 0; i < 300; i++) {
      now = window(l, now, (c) => latencyAt(c, 10, 20));
      seen.push(l.limit);
    }
    // 1.5× the no-load time is reached at 15 waiting for 10 slots; the sawtooth stays around it.
    const last = seen.slice(-100);
    expect(Math.max(...last)).toBeLessThanOrEqual(30);
    expect(Math.min(...last)).toBeGreaterThanOrEqual(OPTS.min);
    expect(l.baselineMs).toBeLessThanOrEqual(25);
  });

  it('grows to the maximum while answers stay quick and the limit is reached', () => {
    const l = new ConcurrencyLimit(OPTS, 0);
    let now = 0;
    for (let i = 0; i < 100; i++) now = window(l, now, () => 2);
    expect(l.limit).toBe(256);
  });

  it('does not grow while the limit is not reached', () => {
    const l = new ConcurrencyLimit(OPTS, 0);
    let now = 0;
    for (let i = 0; i < 50; i++) now = window(l, now, () => 2, 3);
    expect(l.limit).toBe(OPTS.initial);
  });

  it('a few slow answers in a window of quick ones are not overload (median, not mean)', () => {
    const l = new ConcurrencyLimit(OPTS, 0);
    const now = window(l, 0, () => 5);
    const before = l.limit;
    for (let i = 0; i < 3; i++) l.sample(2000, before, now);
    for (let i = 0; i < 7; i++) l.sample(5, before, now + (i === 6 ? OPTS.windowMs : 0));
    expect(l.limit).toBeGreaterThan(before);
  });

  it('cuts at most by a quarter per window, and never below the minimum', () => {
    const l = new ConcurrencyLimit(OPTS, 0);
    let now = window(l, 0, () => 10);
    const before = l.limit;
    now = window(l, now, () => 10_000);
    expect(l.limit).toBe(Math.floor(before * 0.75));
    for (let i = 0; i < 15; i++) now = window(l, now, () => 10_000);
    expect(l.limit).toBe(OPTS.min);
  });

  it('sub-millisecond jitter is not overload: the queueing delay must also exceed minQueueDelayMs', () => {
    const l = new ConcurrencyLimit(OPTS, 0);
    let now = window(l, 0, () => 0.3);
    for (let i = 0; i < 15; i++) now = window(l, now, () => 3); // 10× the baseline but only 2.7 ms more
    expect(l.limit).toBeGreaterThan(OPTS.initial);
  });

  it('measures the no-load time again in probes: once soon after the start, then every probeEveryMs (a baseline from loaded windows would creep up)', () => {
    const l = new ConcurrencyLimit(OPTS, 0);
    expect(l.probing).toBe(true); // the first window is a probe at the minimum
    expect(l.limit).toBe(OPTS.min);
    let now = window(l, 0, () => 1);
    expect(l.baselineMs).toBe(1);
    expect(l.limit).toBe(OPTS.initial);
    // The first probe met a start-up burst; the second one, soon after, measures the real 50 ms.
    while (now < OPTS.secondProbeAfterMs) now = window(l, now, () => 50, 0);
    expect(l.baselineMs).toBe(1);
    while (now < OPTS.secondProbeAfterMs + 3 * OPTS.windowMs) now = window(l, now, () => 50, 0);
    expect(l.baselineMs).toBe(50);
    // The server got slower for good: loaded windows do not raise the baseline, the next probe does.
    while (now < OPTS.probeEveryMs) now = window(l, now, () => 80, 0);
    expect(l.baselineMs).toBe(50);
    while (now < OPTS.probeEveryMs + OPTS.secondProbeAfterMs + 3 * OPTS.windowMs) now = window(l, now, () => 80, 0);
    expect(l.baselineMs).toBe(80);
  });

  it('an idle start is not a failed probe: the probe begins with the first answer', () => {
    const l = new ConcurrencyLimit(OPTS, 0);
    window(l, 10 * OPTS.probeMaxMs, () => 7); // the first request comes long after the start
    expect(l.baselineMs).toBe(7);
  });

  it('a probe counts only answers sent while fewer than the minimum were waiting', () => {
    const l = new ConcurrencyLimit(OPTS, 0);
    for (let i = 0; i < 20; i++) l.sample(500, 30, 1); // sent before the probe, into a loaded server
    window(l, 1, () => 5);
    expect(l.baselineMs).toBe(5);
  });
});
