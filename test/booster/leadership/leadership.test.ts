import { describe, expect, it } from 'vitest';
import { Leadership, type LeadershipTimers, type LeadershipTransition } from '../../../booster/leadership/leadership.js';
import { type LeadershipOptions, RIDE_THROUGH_GRACE_MS } from '../../../booster/leadership/leadership-rule.js';
import type { LeaseInfo, LeaseStore } from '../../../booster/leadership/lease-store.js';
import type { PeerAnswer } from '../../../booster/leadership/peer-probe.js';
import { silentLog } from '../fixtures.js';

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

/**
 * The lease row, timed by the simulated clock. For a `blocked` node the database does not answer:
 * its calls wait and run when it is unblocked (as PostgreSQL answers after SIGCONT); `failing`
 * nodes get a connection error at once (a restart).
 */
class SimLeaseRow {
  holder: string | null = null;
  epoch = 0;
  expiresAt = -1;
  readonly blocked = new Set<string>();
  readonly failing = new Set<string>();
  readonly #held = new Map<string, (() => void)[]>();
  constructor(private readonly time: SimTime) {}

  /** The database answers this node again: its waiting calls run now, in order. */
  unblock(node: string): void {
    this.blocked.delete(node);
    for (const run of this.#held.get(node)?.splice(0) ?? []) run();
  }

  store(node: string): LeaseStore & { calls: { op: string; at: number }[] } {
    const t = this.time;
    const calls: { op: string; at: number }[] = [];
    const answer = <T>(fn: () => T): Promise<T> => {
      if (this.failing.has(node)) return Promise.reject(new Error('connection refused'));
      if (!this.blocked.has(node)) return Promise.resolve().then(fn);
      return new Promise<T>((resolve) => {
        const q = this.#held.get(node) ?? [];
        this.#held.set(node, q);
        q.push(() => resolve(fn()));
      });
    };
    return {
      calls,
      tryAcquire: () =>
        answer(() => {
          calls.push({ op: 'acquire', at: t.now });
          if (this.expiresAt >= t.now) return null;
          this.holder = node;
          this.epoch++;
          this.expiresAt = t.now + OPTS.leaseMs;
          return this.epoch;
        }),
      renew: (epoch) =>
        answer(() => {
          calls.push({ op: 'renew', at: t.now });
          if (this.holder !== node || this.epoch !== epoch || this.expiresAt <= t.now) return false;
          this.expiresAt = t.now + OPTS.leaseMs;
          return true;
        }),
      release: (epoch) =>
        answer(() => {
          calls.push({ op: 'release', at: t.now });
          if (this.holder === node && this.epoch === epoch) this.expiresAt = t.now - 1000;
        }),
      read: () =>
        answer((): LeaseInfo => {
          calls.push({ op: 'read', at: t.now });
          return { holder: this.holder, holderUrl: this.holder && `http://${this.holder}`, epoch: this.epoch, live: this.expiresAt > t.now };
        }),
    };
  }
}

type Node = ReturnType<typeof node>;

/** Who answers whom: a dead node answers nobody; a cut link answers neither way. */
class Net {
  readonly nodes = new Map<string, Node>();
  readonly dead = new Set<string>();
  readonly cut = new Set<string>();
  probe(from: string, to: string): PeerAnswer {
    const peer = this.nodes.get(to);
    // A dead process refuses connections at once; a cut link just stays silent.
    if (!peer || this.dead.has(to)) return { state: 'no-answer', epoch: 0, refused: true };
    if (this.cut.has(from) || this.cut.has(to)) return { state: 'no-answer', epoch: 0 };
    return { state: peer.l.role, epoch: peer.l.currentEpoch() };
  }
}

function node(time: SimTime, row: SimLeaseRow, id: string, opts: { net?: Net; peer?: string; lease?: LeaseStore } = {}) {
  const events: (LeadershipTransition & { at: number })[] = [];
  const lease = opts.lease ?? row.store(id);
  const { net, peer } = opts;
  const l = new Leadership({
    lease,
    opts: OPTS,
    clock: () => time.now,
    log: silentLog,
    timers: time.timers,
    selfUrl: () => `http://${id}`,
    nodeId: id,
    probePeer: net && peer ? () => Promise.resolve(net.probe(id, peer)) : null,
  });
  l.onTransition((t) => void events.push({ ...t, at: time.now }));
  const n = { l, events, lease: lease as LeaseStore & { calls: { op: string; at: number }[] } };
  net?.nodes.set(id, n);
  return n;
}

/** A started pair a (active) / b (standby) probing each other. */
async function pair(time: SimTime, row: SimLeaseRow) {
  const net = new Net();
  const a = node(time, row, 'a', { net, peer: 'b' });
  const b = node(time, row, 'b', { net, peer: 'a' });
  await a.l.start();
  await b.l.start();
  await time.advance(1000);
  expect(a.l.role).toBe('active');
  expect(b.l.role).toBe('standby');
  return { net, a, b };
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

  it('steps down at once when the database refuses a renewal and someone else holds a live lease', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const a = node(time, row, 'a');
    await a.l.start();
    row.holder = 'someone-else';
    row.epoch = 5;
    await time.advance(OPTS.renewMs);
    expect(a.l.role).toBe('standby');
    expect(a.events.at(-1)).toMatchObject({ kind: 'stepped-down', epoch: 1, reason: 'leader lease lost', at: OPTS.renewMs });
    expect(a.l.currentEpoch()).toBe(5);
    a.l.stop();
  });

  for (const outageMs of [2000, 5000]) {
    for (const how of ['stall', 'restart'] as const) {
      it(`a ${outageMs / 1000} s database ${how} with the peer alive: no step-down, no acquisition by the standby, lease-needing work paused then resumed`, async () => {
        const time = new SimTime();
        const row = new SimLeaseRow(time);
        const { a, b } = await pair(time, row);
        const acquiresBefore = b.lease.calls.filter((c) => c.op === 'acquire').length;
        const held: boolean[] = [];
        time.onStep = () => {
          held.push(a.l.holdsLease());
          expect(a.l.role).toBe('active');
          expect(b.l.role).toBe('standby');
          expect(b.l.holdsLease()).toBe(false);
        };
        for (const n of ['a', 'b']) (how === 'stall' ? row.blocked : row.failing).add(n);
        await time.advance(outageMs);
        // Paused: the lease is not confirmed once the renewal deadline has passed.
        expect(a.l.holdsLease()).toBe(false);
        expect(a.events.map((e) => e.kind)).toEqual(['became-active', 'lease-unsure']);
        expect(a.events[1].at - 1000).toBeLessThanOrEqual(OPTS.renewDeadlineMs + OPTS.renewMs + 25);
        row.failing.clear();
        row.unblock('a');
        row.unblock('b');
        await time.advance(1000);
        time.onStep = () => {};
        expect(a.l.role).toBe('active');
        expect(a.l.holdsLease()).toBe(true);
        expect(held.at(-1)).toBe(true);
        const regained = a.events.at(-1)!;
        expect(regained.kind).toBe('lease-regained');
        // The lease lapsed during the outage, so it was re-taken with a new epoch, by the same booster.
        expect(a.l.epoch).toBe(2);
        expect(row.holder).toBe('a');
        expect(regained).toMatchObject({ epoch: 2, previousEpoch: 1 });
        expect(a.events.some((e) => e.kind === 'stepped-down')).toBe(false);
        expect(b.lease.calls.filter((c) => c.op === 'acquire').length).toBe(acquiresBefore);
        expect(b.l.currentEpoch()).toBe(2);
        a.l.stop();
        b.l.stop();
      });
    }
  }

  it('a short blip (under the renewal deadline): nothing pauses, same epoch', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const { a, b } = await pair(time, row);
    row.blocked.add('a');
    await time.advance(300);
    row.unblock('a');
    await time.advance(1000);
    expect(a.events.map((e) => e.kind)).toEqual(['became-active']);
    expect(a.l.epoch).toBe(1);
    a.l.stop();
    b.l.stop();
  });

  it('an outage the lease survives: renewed at the same epoch once the database answers', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const { a, b } = await pair(time, row);
    row.blocked.add('a');
    await time.advance(OPTS.renewDeadlineMs + 100); // past the deadline, lease (800) not yet lapsed
    expect(a.l.holdsLease()).toBe(false);
    row.unblock('a');
    await time.advance(50);
    expect(a.l.holdsLease()).toBe(true);
    expect(a.events.at(-1)).toMatchObject({ kind: 'lease-regained', epoch: 1, previousEpoch: 1 });
    a.l.stop();
    b.l.stop();
  });

  it('only the active lost the database (peer alive): the standby waits the grace, takes over, the old active steps down on seeing it; never two lease holders', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const { a, b } = await pair(time, row);
    let both = false;
    time.onStep = () => {
      if (a.l.holdsLease() && b.l.holdsLease()) both = true;
    };
    row.blocked.add('a');
    const cutAt = time.now;
    await time.advance(RIDE_THROUGH_GRACE_MS - 500);
    expect(b.l.role).toBe('standby');
    expect(a.l.role).toBe('active');
    await time.advance(2000);
    expect(both).toBe(false);
    expect(b.l.role).toBe('active');
    expect(b.l.epoch).toBe(2);
    const up = b.events.find((e) => e.kind === 'became-active')!;
    expect(up.at - cutAt).toBeGreaterThanOrEqual(RIDE_THROUGH_GRACE_MS);
    // The riding active probes its peer, sees a newer active, and steps down within one probe.
    const down = a.events.find((e) => e.kind === 'stepped-down')!;
    expect(down).toMatchObject({ reason: 'newer epoch seen', epoch: 1 });
    expect(down.at - up.at).toBeLessThanOrEqual(OPTS.probeMs);
    a.l.stop();
    b.l.stop();
  });

  it('split brain bounded: the active cut off from database and peer keeps riding at its old epoch until a server shows the newer one', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const { net, a, b } = await pair(time, row);
    let both = false;
    time.onStep = () => {
      if (a.l.holdsLease() && b.l.holdsLease()) both = true;
    };
    row.blocked.add('a');
    net.cut.add('a');
    const cutAt = time.now;
    await time.advance(2000);
    expect(both).toBe(false);
    const up = b.events.find((e) => e.kind === 'became-active')!;
    expect(up.epoch).toBe(2);
    expect(up.at - cutAt).toBeLessThanOrEqual(OPTS.leaseMs + OPTS.fastPollMs);
    // a still serves (role active, old epoch, no lease-needing work): it cannot tell this from a database down for everybody.
    expect(a.l.role).toBe('active');
    expect(a.l.holdsLease()).toBe(false);
    expect(a.l.currentEpoch()).toBe(1);
    // A server heartbeat carrying epochSeen = 2 reaches a: it steps down at once.
    a.l.noteEpoch(2);
    expect(a.l.role).toBe('standby');
    expect(a.events.at(-1)).toMatchObject({ kind: 'stepped-down', reason: 'newer epoch seen' });
    a.l.stop();
    b.l.stop();
  });

  it('standby: reads slowly while the peer answers "active" (no acquisition), tries at once and fast when it stops; learns the active from the lease row', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    row.holder = 'a';
    row.epoch = 3;
    row.expiresAt = 1_000_000;
    let peer: PeerAnswer = { state: 'active', epoch: 3 };
    const b = new Leadership({
      lease: row.store('b'),
      opts: OPTS,
      clock: () => time.now,
      log: silentLog,
      timers: time.timers,
      selfUrl: () => 'http://b',
      nodeId: 'b',
      probePeer: () => Promise.resolve(peer),
    });
    const calls = (b as unknown as { d: { lease: { calls: { op: string; at: number }[] } } }).d.lease.calls;
    await b.start();
    expect(b.role).toBe('standby');
    expect(b.peer.state).toBe('active');
    expect(b.activeUrl).toBe('http://a');
    expect(b.currentEpoch()).toBe(3);
    const at = (op: string, from: number) => calls.filter((c) => c.op === op && c.at >= from).map((c) => c.at);
    const gaps = (xs: number[]) => xs.map((x, i) => (i ? x - xs[i - 1] : 0)).slice(1);
    await time.advance(1500);
    expect(at('acquire', 0)).toEqual([]);
    expect(new Set(gaps(at('read', 0)))).toEqual(new Set([OPTS.standbyPollMs]));
    // One probe that times out is not a dead peer; a second in a row is.
    peer = { state: 'no-answer', epoch: 0 };
    await time.advance(OPTS.probeMs);
    expect(b.peerAlive).toBe(true);
    expect(at('acquire', 0)).toEqual([]);
    peer = { state: 'active', epoch: 3 };
    await time.advance(OPTS.probeMs);
    peer = { state: 'no-answer', epoch: 0 };
    await time.advance(OPTS.probeMs);
    expect(b.peerAlive).toBe(true); // misses must be in a row
    expect(at('acquire', 0)).toEqual([]);
    const lostAt = time.now + OPTS.probeMs - (time.now % OPTS.probeMs);
    await time.advance(OPTS.probeMs);
    expect(b.peerAlive).toBe(false);
    expect(at('acquire', 0)[0]).toBe(lostAt); // tried at once when the second probe in a row failed
    await time.advance(500);
    expect(new Set(gaps(at('acquire', lostAt)))).toEqual(new Set([OPTS.fastPollMs]));
    expect(time.pendingDelays()).toEqual([OPTS.fastPollMs]);
    b.stop();
  });

  it('kill -9 of the active: the standby takes over within the failover formula', async () => {
    const takeovers: number[] = [];
    // The kill lands at several moments of the renewal cycle.
    for (const offset of [0, 37, 80, 123, 160, 199]) {
      const time = new SimTime();
      const row = new SimLeaseRow(time);
      const { net, a, b } = await pair(time, row);
      await time.advance(offset);
      const killedAt = time.now;
      a.l.stop(); // no release: the process is gone
      net.dead.add('a');
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

  it('resign: hands the lease over within one probe (the old active answers "standby"), without a step-down event; stop is idempotent', async () => {
    const time = new SimTime();
    const row = new SimLeaseRow(time);
    const { a, b } = await pair(time, row);
    a.l.stop();
    const releasedAt = time.now;
    expect(await a.l.resign()).toBe(1);
    expect(await a.l.resign()).toBe(null);
    a.l.stop();
    expect(a.l.role).toBe('standby');
    expect(a.events.map((e) => e.kind)).toEqual(['became-active']);
    await time.advance(OPTS.standbyPollMs);
    expect(b.l.role).toBe('active');
    expect(b.l.epoch).toBe(2);
    expect(b.events.at(-1)!.at - releasedAt).toBeLessThanOrEqual(OPTS.probeMs);
    b.l.stop();
  });
});
