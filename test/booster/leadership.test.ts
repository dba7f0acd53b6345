import { describe, expect, it } from 'vitest';
import type { LeaseInfo } from '../../booster/leader.js';
import { Leadership, type LeadershipOptions, type LeadershipTimers, type LeadershipTransition, type LeaseStore } from '../../booster/leadership.js';
import { silentLog } from './fixtures.js';

/**
 * Leadership with simulated time: a hand-moved clock, timers that fire only when the test moves
 * time, and an in-memory lease row timed by the same clock (as the database times the real one).
 * Figures here are simulated milliseconds, so they are exact and do not depend on the machine.
 */
const OPTS: LeadershipOptions & { leaseMs: number } = { leaseMs: 800, renewMs: 200, renewDeadlineMs: 550, standbyPollMs: 250, fastPollMs: 50, probeMs: 100 };

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

class SimTime {
  now = 0;
  readonly #timers = new Map<number, { at: number; fn: () => void; every: number | null }>();
  #next = 1;
  /** Called after every timer that fired (and its promise chains) settled. */
  onStep: () => void = () => {};

  readonly timers: LeadershipTimers = {
    setTimeout: (fn, ms) => this.#add(fn, ms, null),
    clearTimeout: (h) => void this.#timers.delete(h as number),
    setInterval: (fn, ms) => this.#add(fn, ms, ms),
    clearInterval: (h) => void this.#timers.delete(h as number),
  };

  #add(fn: () => void, ms: number, every: number | null): number {
    this.#timers.set(this.#next, { at: this.now + ms, fn, every });
    return this.#next++;
  }

  /** Delays of the one-shot timers pending now (the election loop's next check). */
  pendingDelays(): number[] {
    return [...this.#timers.values()].filter((t) => t.every === null).map((t) => t.at - this.now);
  }

  async advance(ms: number): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      let due: [number, { at: number; fn: () => void; every: number | null }] | null = null;
      for (const e of this.#timers) if (e[1].at <= end && (!due || e[1].at < due[1].at)) due = e;
      if (!due) break;
      const [h, t] = due;
      this.now = t.at;
      if (t.every === null) this.#timers.delete(h);
      else t.at += t.every;
      t.fn();
      await flush();
      this.onStep();
    }
    this.now = end;
  }
}

/** The lease row, timed by the simulated clock. `blocked` nodes get no answer at all (database unreachable for them). */
class SimLeaseRow {
  holder: string | null = null;
  epoch = 0;
  expiresAt = -1;
  readonly blocked = new Set<string>();
  constructor(private readonly time: SimTime) {}

  store(node: string): LeaseStore & { calls: { op: string; at: number }[] } {
    const row = this;
    const t = this.time;
    const calls: { op: string; at: number }[] = [];
    const answer = <T>(fn: () => T): Promise<T> => (row.blocked.has(node) ? new Promise<T>(() => {}) : Promise.resolve().then(fn));
    return {
      calls,
      tryAcquire: () => answer(() => {
        calls.push({ op: 'acquire', at: t.now });
        if (row.expiresAt >= t.now) return null;
        row.holder = node;
        row.epoch++;
        row.expiresAt = t.now + OPTS.leaseMs;
        return row.epoch;
      }),
      renew: (epoch) => answer(() => {
        calls.push({ op: 'renew', at: t.now });
        if (row.holder !== node || row.epoch !== epoch || row.expiresAt <= t.now) return false;
        row.expiresAt = t.now + OPTS.leaseMs;
        return true;
      }),
      release: (epoch) => answer(() => {
        calls.push({ op: 'release', at: t.now });
        if (row.holder === node && row.epoch === epoch) row.expiresAt = t.now - 1000;
      }),
      read: () => answer((): LeaseInfo => ({ holder: row.holder, holderUrl: row.holder && `http://${row.holder}`, epoch: row.epoch, live: row.expiresAt > t.now })),
    };
  }
}

function node(time: SimTime, row: SimLeaseRow, id: string, opts: { peerAlive?: () => boolean; lease?: LeaseStore } = {}) {
  const events: (LeadershipTransition & { at: number })[] = [];
  const lease = opts.lease ?? row.store(id);
  const l = new Leadership({
    lease, opts: OPTS, clock: () => time.now, log: silentLog, timers: time.timers, selfUrl: () => `http://${id}`,
    probePeer: opts.peerAlive ? () => Promise.resolve(opts.peerAlive!()) : null,
  });
  l.onTransition((t) => void events.push({ ...t, at: time.now }));
  return { l, events, lease };
}

describe('Leadership', () => {
  it('acquires a free lease at start and reports became-active with the new epoch', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    row.epoch = 6;
    const a = node(time, row, 'a');
    await a.l.start();
    expect(a.l.role).toBe('active');
    expect(a.l.currentEpoch()).toBe(7);
    expect(a.l.activeUrl).toBe('http://a');
    expect(a.events).toEqual([{ kind: 'became-active', epoch: 7, at: 0 }]);
    // Active: renews every renewMs and keeps the lease.
    expect(time.pendingDelays()).toEqual([OPTS.renewMs]);
    await time.advance(2000);
    expect(a.l.role).toBe('active');
    expect(row.expiresAt).toBeGreaterThan(time.now);
    a.l.stop();
  });

  it('waits for async became-active listeners before the next decision', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const a = node(time, row, 'a');
    const order: string[] = [];
    a.l.onTransition(async () => {
      await flush();
      order.push('listener done');
    });
    await a.l.start();
    order.push('start returned');
    expect(order).toEqual(['listener done', 'start returned']);
    a.l.stop();
  });

  it('steps down when the database refuses a renewal', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const a = node(time, row, 'a');
    await a.l.start();
    row.holder = 'someone-else';
    await time.advance(OPTS.renewMs);
    expect(a.l.role).toBe('standby');
    expect(a.events.at(-1)).toMatchObject({ kind: 'stepped-down', epoch: 1, reason: 'leader lease lost' });
    a.l.stop();
  });

  it('a renewal that fails (no step-down) is retried; only the deadline makes it step down', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const real = row.store('a');
    let failing = false;
    const lease: LeaseStore = { ...real, renew: (e) => (failing ? Promise.reject(new Error('connection reset')) : real.renew(e)) };
    const a = node(time, row, 'a', { lease });
    await a.l.start();
    await time.advance(OPTS.renewMs); // one good renewal at 200
    failing = true;
    await time.advance(OPTS.renewDeadlineMs - 10);
    expect(a.l.role).toBe('active');
    await time.advance(100);
    expect(a.l.role).toBe('standby');
    expect(a.events.at(-1)).toMatchObject({ kind: 'stepped-down', reason: 'lease renewal deadline passed' });
    // Measured from the start of the last good renewal, and before the lease could lapse.
    const at = a.events.at(-1)!.at;
    expect(at - OPTS.renewMs).toBeGreaterThan(OPTS.renewDeadlineMs);
    expect(at - OPTS.renewMs).toBeLessThan(OPTS.leaseMs);
    a.l.stop();
  });

  it('a stalled database: the active is standby before its lease lapses, so the pair never overlaps', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const a = node(time, row, 'a', { peerAlive: () => true });
    const b = node(time, row, 'b', { peerAlive: () => true });
    await a.l.start();
    await b.l.start();
    let overlap = false;
    time.onStep = () => {
      if (a.l.role === 'active' && b.l.role === 'active') overlap = true;
    };
    await time.advance(1000);
    row.blocked.add('a'); // a's renewals hang; b still reaches the database
    await time.advance(3000);
    expect(overlap).toBe(false);
    expect(a.l.role).toBe('standby');
    expect(b.l.role).toBe('active');
    expect(b.l.epoch).toBe(2);
    const down = a.events.find((e) => e.kind === 'stepped-down')!;
    const up = b.events.find((e) => e.kind === 'became-active')!;
    expect(down.at).toBeLessThan(up.at);
    a.l.stop();
    b.l.stop();
  });

  it('standby: polls slowly while the peer answers, fast and at once when it stops; learns the active from the lease row', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    row.holder = 'a';
    row.epoch = 3;
    row.expiresAt = 1_000_000;
    let peer = true;
    const b = node(time, row, 'b', { peerAlive: () => peer });
    await b.l.start();
    expect(b.l.role).toBe('standby');
    expect(b.l.activeUrl).toBe('http://a');
    expect(b.l.currentEpoch()).toBe(3);
    const calls = (b.lease as LeaseStore & { calls: { op: string; at: number }[] }).calls;
    const acquires = () => calls.filter((c) => c.op === 'acquire').map((c) => c.at);
    const gaps = (from: number) => acquires().filter((at) => at >= from).map((at, i, all) => (i ? at - all[i - 1] : 0)).slice(1);
    await time.advance(OPTS.probeMs); // first probe: the peer answers
    expect(b.l.peerAlive).toBe(true);
    const slowFrom = time.now + OPTS.standbyPollMs; // after the poll scheduled before the probe
    await time.advance(1500);
    expect(new Set(gaps(slowFrom))).toEqual(new Set([OPTS.standbyPollMs]));
    peer = false;
    const lostAt = time.now + OPTS.probeMs - (time.now % OPTS.probeMs);
    await time.advance(OPTS.probeMs);
    expect(b.l.peerAlive).toBe(false);
    expect(acquires()).toContain(lostAt); // tried at once when the probe failed
    await time.advance(500);
    expect(new Set(gaps(lostAt))).toEqual(new Set([OPTS.fastPollMs]));
    expect(time.pendingDelays()).toEqual([OPTS.fastPollMs]);
    b.l.stop();
  });

  it('kill -9 of the active: the standby takes over within the failover formula', async () => {
    const takeovers: number[] = [];
    // The kill lands at several moments of the renewal cycle.
    for (const offset of [0, 37, 80, 123, 160, 199]) {
      const time = new SimTime();
      const row = new SimLeaseRow(time);
      let aAlive = true;
      const a = node(time, row, 'a');
      const b = node(time, row, 'b', { peerAlive: () => aAlive });
      await a.l.start();
      await b.l.start();
      await time.advance(1000 + offset);
      const killedAt = time.now;
      a.l.stop(); // no release: the process is gone
      aAlive = false;
      await time.advance(2000);
      const up = b.events.find((e) => e.kind === 'became-active')!;
      expect(up.epoch).toBe(2);
      takeovers.push(up.at - killedAt);
      b.l.stop();
    }
    for (const t of takeovers) {
      expect(t).toBeGreaterThanOrEqual(OPTS.leaseMs - OPTS.renewMs);
      expect(t).toBeLessThanOrEqual(OPTS.leaseMs + OPTS.fastPollMs);
    }
    console.log(`simulated takeover after kill -9 (ms): ${takeovers.join(', ')}`);
  });

  it('resign: hands the lease over at once, without a step-down event; stop is idempotent', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const a = node(time, row, 'a');
    const b = node(time, row, 'b', { peerAlive: () => true });
    await a.l.start();
    await b.l.start();
    a.l.stop();
    expect(await a.l.resign()).toBe(1);
    expect(await a.l.resign()).toBe(null);
    a.l.stop();
    expect(a.l.role).toBe('standby');
    expect(a.events.map((e) => e.kind)).toEqual(['became-active']);
    await time.advance(OPTS.standbyPollMs);
    expect(b.l.role).toBe('active');
    expect(b.l.epoch).toBe(2);
    b.l.stop();
  });
});
