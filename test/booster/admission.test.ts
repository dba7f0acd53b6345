import { describe, expect, it } from 'vitest';
import { Admission, type AdmissionTimers, RETRY_FLOOR } from '../../booster/admission.js';

/** Manual timers: nothing fires until the test moves time. */
function manualTimers() {
  let now = 0;
  const pending = new Map<number, { at: number; fn: () => void }>();
  let next = 1;
  const timers: AdmissionTimers = {
    setTimeout: (fn, ms) => {
      pending.set(next, { at: now + ms, fn });
      return next++;
    },
    clearTimeout: (h) => void pending.delete(h as number),
  };
  const advance = (ms: number) => {
    now += ms;
    for (const [h, t] of [...pending]) {
      if (t.at <= now) {
        pending.delete(h);
        t.fn();
      }
    }
  };
  return { timers, advance, pending };
}

const settled = <T>(p: Promise<T>) => Promise.race([p, new Promise((r) => setImmediate(() => r('pending')))]);

describe('Admission: slot queue', () => {
  it('wakes waiters oldest first and reports the queue length', async () => {
    const t = manualTimers();
    const lengths: number[] = [];
    const a = new Admission({ queueSize: 2, queueTimeoutMs: 100, retryBudgetPercent: 20 }, (n) => lengths.push(n), t.timers);
    const first = a.waitForSlot()!;
    const second = a.waitForSlot()!;
    expect(a.waitForSlot()).toBeNull(); // full
    expect(a.queued).toBe(2);
    a.release();
    expect(await first).toBe(true);
    expect(await settled(second)).toBe('pending');
    a.release();
    expect(await second).toBe(true);
    a.release(); // nobody waiting: a no-op
    expect(lengths).toEqual([1, 2, 1, 0]);
    expect(t.pending.size).toBe(0);
  });

  it('a waiter times out with false and leaves the queue', async () => {
    const t = manualTimers();
    const a = new Admission({ queueSize: 5, queueTimeoutMs: 100, retryBudgetPercent: 20 }, undefined, t.timers);
    const w = a.waitForSlot()!;
    t.advance(99);
    expect(await settled(w)).toBe('pending');
    t.advance(1);
    expect(await w).toBe(false);
    expect(a.queued).toBe(0);
  });

  it('close lets every waiter go with false and refuses new ones', async () => {
    const t = manualTimers();
    const a = new Admission({ queueSize: 5, queueTimeoutMs: 100, retryBudgetPercent: 20 }, undefined, t.timers);
    const waits = [a.waitForSlot()!, a.waitForSlot()!];
    a.close();
    a.close();
    expect(await Promise.all(waits)).toEqual([false, false]);
    expect(a.waitForSlot()).toBeNull();
    expect(t.pending.size).toBe(0);
  });
});

describe('Admission: retry budget', () => {
  it('starts at the floor, is spent one by one, refilled to the floor', () => {
    const a = new Admission({ queueSize: 1, queueTimeoutMs: 1, retryBudgetPercent: 20 });
    for (let i = 0; i < RETRY_FLOOR; i++) expect(a.spendRetry()).toBe(true);
    expect(a.spendRetry()).toBe(false);
    a.refillFloor();
    expect(a.retryTokens).toBe(RETRY_FLOOR);
  });

  it('every request earns retryBudgetPercent of a retry', () => {
    const a = new Admission({ queueSize: 1, queueTimeoutMs: 1, retryBudgetPercent: 20 });
    while (a.spendRetry());
    for (let i = 0; i < 4; i++) a.earn();
    expect(a.spendRetry()).toBe(false);
    a.earn();
    expect(a.spendRetry()).toBe(true);
    expect(a.spendRetry()).toBe(false);
  });

  it('the budget is capped, so a long quiet spell does not allow a retry storm', () => {
    const a = new Admission({ queueSize: 1, queueTimeoutMs: 1, retryBudgetPercent: 100 });
    for (let i = 0; i < 1000; i++) a.earn();
    expect(a.retryTokens).toBe(100);
  });
});
