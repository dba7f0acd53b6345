import type { Logger } from '../../common/log.js';
import type { QueryOutcomeSink } from './db-reachability.js';
import { type LeadershipOptions, LeadershipRule, type LeadershipState, type RenewOutcome, type Role, type StepDownReason } from './leadership-rule.js';
import type { LeaseInfo, LeaseStore } from './lease-store.js';
import { PEER_MISSES, type PeerAnswer } from './peer-probe.js';

/**
 * Active/standby: the election loop around the leader lease, the renewal watchdog and the
 * peer probe. Only the database decides who is active (the lease); the peer probe only makes
 * a standby poll faster. Transitions go out to listeners (the active's duties, active-duties.ts);
 * when to step down and when to try to acquire is decided in `LeadershipRule` alone
 * (leadership-rule.ts). Clock, timers, lease and probe are injected, so tests drive them.
 */
export interface LeadershipTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

const realTimers: LeadershipTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export type LeadershipTransition =
  | { kind: 'became-active'; epoch: number }
  | { kind: 'stepped-down'; epoch: number; reason: StepDownReason }
  /** Still active for the data plane, but the lease is not confirmed: lease-needing work pauses. */
  | { kind: 'lease-unsure'; epoch: number }
  /** The lease is confirmed again: renewed at the same epoch or re-acquired at a new one. */
  | { kind: 'lease-regained'; epoch: number; previousEpoch: number };

/** Became-active listeners may be async: the loop waits for them before its next decision. */
export type LeadershipListener = (t: LeadershipTransition) => void | Promise<void>;

export interface LeadershipDeps {
  lease: LeaseStore;
  opts: LeadershipOptions;
  /** Monotonic ms. */
  clock: () => number;
  log: Logger;
  /** This booster's id as the lease row names it. */
  nodeId: string;
  /** Asks the peer booster what it is; null without a peer. */
  probePeer?: (() => Promise<PeerAnswer>) | null;
  /** For the logs only. */
  peerUrl?: string | null;
  timers?: LeadershipTimers;
  /** The URL this booster advertises (its own activeUrl once active). */
  selfUrl: () => string;
  /** Lease queries report here (database reachability); checked by the watchdog. */
  db?: (QueryOutcomeSink & { check(): void }) | null;
}

/** How often the watchdog looks at the renewal deadline. */
const WATCHDOG_MS = 25;
/** A standby reads the lease row (active URL, epoch) every this many polls. */
const READ_EVERY = 4;
const NO_ANSWER: PeerAnswer = { state: 'no-answer', epoch: 0 };

export class Leadership {
  #role: Role = 'standby';
  #epoch = 0;
  /** Newest leader epoch known from the lease row (what a standby reports and, when it serves, sends). */
  #leaderEpoch = 0;
  #activeUrl: string | null = null;
  #peer: PeerAnswer = NO_ANSWER;
  #peerMisses = 0;
  #lastRenewOk = 0;
  /** Active whose lease is not confirmed (lease-unsure emitted, lease-regained not yet). */
  #riding = false;
  #lapsedSince: number | null = null;
  #busy = false;
  #stopped = false;
  #started = false;
  #standbyTicks = 0;
  #electionTimer: unknown = null;
  #watchdog: unknown = null;
  #probeTimer: unknown = null;
  readonly #listeners: LeadershipListener[] = [];
  readonly #rule: LeadershipRule;
  readonly #timers: LeadershipTimers;

  constructor(private readonly d: LeadershipDeps) {
    this.#rule = new LeadershipRule(d.opts);
    this.#timers = d.timers ?? realTimers;
  }

  get role(): Role {
    return this.#role;
  }

  /** Our epoch while active; the last one we held otherwise (0 before any). */
  get epoch(): number {
    return this.#epoch;
  }

  /** The epoch to report and send: ours while active, else the newest known. */
  currentEpoch(): number {
    return this.#role === 'active' ? this.#epoch : Math.max(this.#leaderEpoch, this.#epoch);
  }

  get activeUrl(): string | null {
    return this.#activeUrl;
  }

  get peerAlive(): boolean {
    return this.#peer.state !== 'no-answer';
  }

  get peer(): PeerAnswer {
    return this.#peer;
  }

  /** Active with a confirmed lease: step dispatch, drains and other leader-only writes may run. */
  holdsLease(): boolean {
    return this.#rule.holdsLease(this.state, this.d.clock());
  }

  get state(): LeadershipState {
    return {
      role: this.#role,
      epoch: this.#epoch,
      lastRenewOk: this.#lastRenewOk,
      hasPeer: !!this.d.probePeer,
      peer: this.#peer.state,
      lapsedSince: this.#lapsedSince,
    };
  }

  /** Subscribes to transitions; returns the unsubscribe function. */
  onTransition(l: LeadershipListener): () => void {
    this.#listeners.push(l);
    return () => {
      const i = this.#listeners.indexOf(l);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** Peer probe first (a live active must be seen before we try its lease), then the first election step, the loop, the watchdog. */
  async start(): Promise<void> {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#watchdog = this.#timers.setInterval(() => this.checkDeadline(), WATCHDOG_MS);
    if (this.d.probePeer) {
      await this.probe();
      this.#probeTimer = this.#timers.setInterval(() => void this.probe(), this.d.opts.probeMs);
    }
    await this.tick();
    this.#schedule();
  }

  /** One election step: renew while active, try to acquire while standby. Also called on a stale-epoch refusal. */
  async tick(): Promise<void> {
    if (this.#busy || this.#stopped) return;
    this.#busy = true;
    try {
      if (this.#role === 'active') await this.#renew();
      else await this.#standbyStep();
    } catch (err) {
      this.d.log.warn({ err }, 'leader lease check failed');
    } finally {
      this.#busy = false;
    }
  }

  #q<T>(p: Promise<T>): Promise<T> {
    return this.d.db ? this.d.db.track(p) : p;
  }

  async #renew(): Promise<void> {
    const started = this.d.clock();
    const myEpoch = this.#epoch;
    let outcome: RenewOutcome;
    try {
      outcome = (await this.#q(this.d.lease.renew(myEpoch))) ? 'renewed' : 'refused';
    } catch (err) {
      if (!this.#riding) this.d.log.warn({ err }, 'leader lease renewal failed');
      outcome = 'error';
    }
    // A step-down or a new term while we waited makes this answer stale.
    if (this.#role !== 'active' || this.#epoch !== myEpoch) return;
    if (outcome === 'renewed') {
      this.#lastRenewOk = started;
      if (this.#riding) await this.#regained(myEpoch, myEpoch);
      return;
    }
    if (this.#rule.afterRenew(outcome) === 'reacquire') await this.#reacquire(myEpoch);
  }

  /** A refused renewal: take the lease again if it lapsed, adopt it if the row says it is ours, else step down. */
  async #reacquire(previous: number): Promise<void> {
    const started = this.d.clock();
    const got = await this.#q(this.d.lease.tryAcquire());
    const row = got === null ? await this.#q(this.d.lease.read()) : null;
    if (this.#role !== 'active' || this.#epoch !== previous || this.#stopped) return;
    const decision = this.#rule.afterReacquire(got, row, this.d.nodeId);
    if (row) {
      this.#leaderEpoch = Math.max(this.#leaderEpoch, row.epoch);
      if (row.live && row.holder !== this.d.nodeId) this.#activeUrl = row.holderUrl;
    }
    switch (decision.kind) {
      case 'regained':
        this.#epoch = decision.epoch;
        this.#lastRenewOk = started;
        this.d.log.warn({ epoch: decision.epoch, previousEpoch: previous }, 'leader lease had lapsed; re-acquired it with a new epoch');
        await this.#regained(decision.epoch, previous);
        return;
      case 'adopt':
        // An acquisition of ours that answered late: the row names us; the next renewal confirms it.
        this.#epoch = decision.epoch;
        return;
      case 'step-down':
        this.#stepDown(decision.reason);
        return;
      case 'retry':
        return;
    }
  }

  async #regained(epoch: number, previousEpoch: number): Promise<void> {
    const was = this.#riding;
    this.#riding = false;
    this.#activeUrl = this.d.selfUrl();
    if (was) this.d.log.info({ epoch, previousEpoch }, 'leader lease confirmed again; resuming lease-needing work');
    if (was || epoch !== previousEpoch) await this.#emit({ kind: 'lease-regained', epoch, previousEpoch });
  }

  async #standbyStep(): Promise<void> {
    const now = this.d.clock();
    if (!this.#rule.shouldTryAcquire(this.state, now)) {
      // The peer says it is active: only watch the row (a lapse that lasts means it lost the database, not us).
      const info = await this.#q(this.d.lease.read());
      this.#learn(info);
      if (info.live) this.#lapsedSince = null;
      else this.#lapsedSince ??= now;
      return;
    }
    const got = await this.#q(this.d.lease.tryAcquire());
    if (got !== null && !this.#stopped) {
      await this.#becomeActive(got, now);
      return;
    }
    if (this.#standbyTicks++ % READ_EVERY === 0) this.#learn(await this.#q(this.d.lease.read()));
  }

  #learn(info: LeaseInfo): void {
    this.#activeUrl = info.live ? info.holderUrl : null;
    this.#leaderEpoch = Math.max(this.#leaderEpoch, info.epoch);
  }

  /** Watchdog: past the renewal deadline the lease is not confirmed; lease-needing work pauses, the data plane stays. */
  checkDeadline(): void {
    this.d.db?.check();
    if (this.#role !== 'active' || this.#riding || this.holdsLease()) return;
    this.#riding = true;
    this.d.log.warn(
      { epoch: this.#epoch, sinceRenewMs: Math.round(this.d.clock() - this.#lastRenewOk) },
      'leader lease not confirmed; riding through: proxying on, dispatch and drains paused',
    );
    void this.#emit({ kind: 'lease-unsure', epoch: this.#epoch });
  }

  /** An epoch seen elsewhere (a server's heartbeat, the peer): newer than ours makes the active step down at once. */
  noteEpoch(seen: number): void {
    this.#leaderEpoch = Math.max(this.#leaderEpoch, seen);
    const reason = this.#rule.newerEpoch(this.state, seen);
    if (reason) this.#stepDown(reason);
  }

  /** Peer probe: "active" / "standby" / no answer. A peer that stops being active makes the standby try the lease at once. */
  async probe(): Promise<void> {
    if (!this.d.probePeer || this.#stopped || !this.#rule.probes(this.state, this.d.clock())) return;
    const answer = await this.d.probePeer().catch(() => NO_ANSWER);
    if (answer.state === 'no-answer' && this.#peer.state !== 'no-answer' && !answer.refused && ++this.#peerMisses < PEER_MISSES) return;
    this.#peerMisses = 0;
    const was = this.#peer;
    this.#peer = answer;
    if (answer.state !== was.state) {
      const msg = answer.state === 'no-answer' ? 'peer booster does not answer' : `peer booster answers: ${answer.state}`;
      (answer.state === 'no-answer' ? this.d.log.warn : this.d.log.info).call(this.d.log, { peer: this.d.peerUrl, epoch: answer.epoch }, msg);
    }
    if (answer.state === 'active') {
      this.noteEpoch(answer.epoch);
      return;
    }
    this.#lapsedSince = null;
    if (was.state === 'active' && this.#role === 'standby') {
      this.#timers.clearTimeout(this.#electionTimer);
      void this.tick().finally(() => this.#schedule());
    }
  }

  #schedule(): void {
    this.#timers.clearTimeout(this.#electionTimer);
    this.#electionTimer = null;
    if (this.#stopped) return;
    this.#electionTimer = this.#timers.setTimeout(() => void this.tick().finally(() => this.#schedule()), this.#rule.nextCheckMs(this.state));
  }

  async #becomeActive(epoch: number, startedAt: number): Promise<void> {
    this.#role = 'active';
    this.#epoch = epoch;
    this.#riding = false;
    this.#lapsedSince = null;
    this.#activeUrl = this.d.selfUrl();
    this.#lastRenewOk = startedAt;
    this.d.log.info({ epoch }, 'this booster is now the active');
    await this.#emit({ kind: 'became-active', epoch });
  }

  #stepDown(reason: StepDownReason): void {
    if (this.#role !== 'active') return;
    const epoch = this.#epoch;
    this.#role = 'standby';
    this.#riding = false;
    if (this.#activeUrl === this.d.selfUrl()) this.#activeUrl = null;
    this.d.log.warn({ epoch, reason }, 'stepping down to standby');
    void this.#emit({ kind: 'stepped-down', epoch, reason });
  }

  async #emit(t: LeadershipTransition): Promise<void> {
    await Promise.all(
      this.#listeners.map(async (l) => {
        try {
          await l(t);
        } catch (err) {
          this.d.log.warn({ err, transition: t.kind }, 'leadership listener failed');
        }
      }),
    );
  }

  /** Stops the loop, the watchdog and the probe; the role stays until `resign()`. Idempotent. */
  stop(): void {
    this.#stopped = true;
    this.#timers.clearTimeout(this.#electionTimer);
    this.#timers.clearInterval(this.#watchdog);
    this.#timers.clearInterval(this.#probeTimer);
    this.#electionTimer = this.#watchdog = this.#probeTimer = null;
  }

  /**
   * Graceful hand-over: becomes standby and lets the lease lapse now, so the peer takes over at
   * its next probe. Returns the released epoch, or null when this booster was not active.
   * Emits no step-down (the caller records the release).
   */
  async resign(): Promise<number | null> {
    this.stop();
    if (this.#role !== 'active') return null;
    const epoch = this.#epoch;
    this.#role = 'standby';
    this.#riding = false;
    await this.d.lease.release(epoch).catch((err) => this.d.log.warn({ err }, 'could not release the leader lease; it lapses by itself'));
    return epoch;
  }
}
