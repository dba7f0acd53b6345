import { describe, expect, it } from 'vitest';
import { Admission, type AdmissionTimers, RETRY_FLOOR, STANDING_INTERVAL_MS, STANDING_TARGET_MS } from '../../../booster/data-plane/admission.js';
import { ADJUST_EVERY_MS, DbPressurePolicy, type DbPressureSource, MIN_ADMIT_SHARE, requestKind } from '../../../booster/data-plane/db-pressure.js';

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
    now: () => now,
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

describe('Admission: a standing queue (CoDel)', () => {
  it('while waiters have been leaving late for a whole interval, new waiters wait at most the interval', async () => {
    const t = manualTimers();
    const a = new Admission({ queueSize: 100, queueTimeoutMs: 5000, retryBudgetPercent: 20 }, undefined, t.timers);
    const first = a.waitForSlot()!;
    t.advance(STANDING_INTERVAL_MS + 100);
    expect(a.standing).toBe(true);
    const second = a.waitForSlot()!;
    t.advance(STANDING_INTERVAL_MS);
    expect(await second).toBe(false); // shortened: it would only have waited behind the overload
    expect(await settled(first)).toBe('pending'); // joined before: keeps its full timeout
    a.release();
    expect(await first).toBe(true);
    // The queue emptied: the next waiter has the full timeout again.
    expect(a.standing).toBe(false);
    const third = a.waitForSlot()!;
    t.advance(STANDING_INTERVAL_MS + 100);
    expect(await settled(third)).toBe('pending');
  });

  it('a burst that drains quickly never shortens the wait', async () => {
    const t = manualTimers();
    const a = new Admission({ queueSize: 100, queueTimeoutMs: 5000, retryBudgetPercent: 20 }, undefined, t.timers);
    for (let i = 0; i < 20; i++) {
      const burst = [a.waitForSlot()!, a.waitForSlot()!, a.waitForSlot()!];
      t.advance(STANDING_TARGET_MS / 2);
      for (const _ of burst) a.release(); // each leaves within the target
      expect(await Promise.all(burst)).toEqual([true, true, true]);
    }
    expect(a.standing).toBe(false);
    const late = a.waitForSlot()!;
    t.advance(STANDING_INTERVAL_MS + 100);
    expect(await settled(late)).toBe('pending');
  });

  it('a waiter that lost its slot waits again at the head, for what is left of its timeout, even when the queue is full', async () => {
    const t = manualTimers();
    const a = new Admission({ queueSize: 1, queueTimeoutMs: 1000, retryBudgetPercent: 20 }, undefined, t.timers);
    const normal = a.waitForSlot()!;
    expect(a.waitForSlot()).toBeNull();
    const back = a.waitForSlot(300, true)!;
    a.release();
    expect(await back).toBe(true);
    expect(await settled(normal)).toBe('pending');
    const again = a.waitForSlot(300, true)!;
    t.advance(300);
    expect(await again).toBe(false);
    expect(await settled(normal)).toBe('pending');
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

describe('DbPressurePolicy: admission under database pressure', () => {
  /** Fake servers whose heartbeats the test sets, and a clock it moves. */
  function world(threshold = 200) {
    let now = 0;
    const servers: { heartbeat: { db?: { rttMs: number; poolWaitMs: number } } | null }[] = [];
    const policy = new DbPressurePolicy(
      { dbPressureMs: threshold, dbPressureRetryAfterS: 2 },
      () => servers as DbPressureSource[],
      () => now,
    );
    const admitted = (n: number, kind: 'new' | 'keyed' | 'health' = 'new') => {
      let ok = 0;
      for (let i = 0; i < n; i++) if (policy.admit(kind)) ok++;
      return ok;
    };
    return { policy, servers, admitted, tick: (ms = ADJUST_EVERY_MS) => (now += ms) };
  }
  const calm = { heartbeat: { db: { rttMs: 2, poolWaitMs: 0 } } };
  // Just over the 200 ms threshold: the share halves (a deeper cut needs figures over 2× it).
  const pressed = { heartbeat: { db: { rttMs: 3, poolWaitMs: 300 } } };
  const slowDb = { heartbeat: { db: { rttMs: 250, poolWaitMs: 0 } } };
  const swamped = { heartbeat: { db: { rttMs: 5, poolWaitMs: 1600 } } };

  it('admits everything while no server reports pressure', () => {
    const w = world();
    w.servers.push(calm, calm);
    expect(w.admitted(100)).toBe(100);
    w.tick();
    expect(w.admitted(100)).toBe(100);
    expect(w.policy.shed).toBe(0);
  });

  it('halves the admitted share of new work each second while every server is pressured; keyed and health requests always pass', () => {
    const w = world();
    w.servers.push(pressed, slowDb); // pool wait on one, round-trip time on the other: both over 200 ms
    expect(w.admitted(100)).toBe(50);
    expect(w.policy.pressured).toBe(true);
    w.tick();
    expect(w.admitted(100)).toBe(25);
    expect(w.admitted(50, 'keyed')).toBe(50);
    expect(w.admitted(50, 'health')).toBe(50);
    for (let i = 0; i < 10; i++) w.tick();
    // never below the floor: a trickle still reaches the servers so recovery is seen
    expect(w.policy.share).toBe(0.25);
    for (let i = 0; i < 6; i++) {
      w.tick();
      w.admitted(1);
    }
    expect(w.policy.share).toBe(MIN_ADMIT_SHARE);
    expect(w.admitted(160)).toBe(10);
  });

  it('grows the share back by a quarter per second once the pressure is gone (idle seconds count)', () => {
    const w = world();
    w.servers.push(pressed);
    w.admitted(1);
    w.tick();
    w.admitted(1);
    expect(w.policy.share).toBe(0.25);
    w.servers[0] = calm;
    w.tick();
    expect(w.admitted(100)).toBe(50);
    w.tick(3 * ADJUST_EVERY_MS);
    expect(w.admitted(100)).toBe(100);
    expect(w.policy.share).toBe(1);
  });

  it('sheds nothing while one server is still free of pressure, or reports no figures (older release)', () => {
    const w = world();
    w.servers.push(pressed, calm);
    expect(w.admitted(100)).toBe(100);
    w.servers[1] = { heartbeat: {} };
    w.tick();
    expect(w.admitted(100)).toBe(100);
  });

  it('cuts deeper the further over the threshold: 1600 ms of pool wait at 200 ms admits an eighth at once', () => {
    const w = world();
    w.servers.push(swamped);
    expect(w.admitted(80)).toBe(10);
    expect(w.policy.share).toBe(1 / 8);
    w.tick();
    w.admitted(1);
    expect(w.policy.share).toBe(MIN_ADMIT_SHARE);
  });

  it('keeps the share while no server is routable: a server taken out by the overload does not come back to a flood', () => {
    const w = world();
    w.servers.push(pressed);
    w.admitted(1);
    expect(w.policy.share).toBe(0.5);
    w.servers.length = 0;
    for (let i = 0; i < 5; i++) {
      w.tick();
      w.admitted(1);
    }
    expect(w.policy.share).toBe(0.5);
    w.servers.push(calm);
    w.tick();
    w.admitted(1);
    expect(w.policy.share).toBe(0.75);
  });

  it('sheds nothing without routable servers (that is BOOSTER_ERR_NO_SERVER) or when turned off', () => {
    const w = world();
    expect(w.admitted(10)).toBe(10);
    const off = world(0);
    off.servers.push(pressed);
    expect(off.admitted(10)).toBe(10);
    expect(off.policy.pressuredNow()).toBe(false);
  });

  it('classifies requests: Idempotency-Key → keyed, /healthz and /readyz → health, the rest → new', () => {
    expect(requestKind('/api/forms/x/tickets', 'k-1')).toBe('keyed');
    expect(requestKind('/api/forms/x/tickets', '')).toBe('new');
    expect(requestKind('/healthz', undefined)).toBe('health');
    expect(requestKind('/readyz?deep=1', undefined)).toBe('health');
    expect(requestKind('/healthzz', undefined)).toBe('new');
    expect(requestKind('/api/tickets', undefined)).toBe('new');
  });
});
