import type { Logger } from '../common/log.js';
import type { LeaseInfo } from './leader.js';

/**
 * Active/standby: the election loop around the leader lease, the renewal watchdog and the
 * peer probe. Only the database decides who is active (the lease); the peer probe only makes
 * a standby poll faster. Transitions go out to listeners (dispatcher, metrics, events log,
 * later a virtual-IP owner); when to step down and when to try to acquire is decided in
 * `LeadershipRule` alone. Clock, timers, lease and probe are injected, so tests drive them.
 */
export type Role = 'active' | 'standby';

/** The lease as the loop needs it (`LeaderLease` in SQL; a fake in tests). */
export interface LeaseStore {
  /** Takes the lease when it has lapsed: the new, larger epoch, or null. */
  tryAcquire(): Promise<number | null>;
  /** Extends our lease at this epoch; false when it is no longer ours. */
  renew(epoch: number): Promise<boolean>;
  /** Lets our lease lapse now (graceful stop). */
  release(epoch: number): Promise<void>;
  read(): Promise<LeaseInfo>;
}

export interface LeadershipTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

export const realTimers: LeadershipTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export interface LeadershipOptions {
  renewMs: number;
  /** The active steps down when no renewal has succeeded for this long (< lease length). */
  renewDeadlineMs: number;
  standbyPollMs: number;
  fastPollMs: number;
  probeMs: number;
}

export type StepDownReason = 'leader lease lost' | 'lease renewal deadline passed';

export type LeadershipTransition = { kind: 'became-active'; epoch: number } | { kind: 'stepped-down'; epoch: number; reason: StepDownReason };

/** Became-active listeners may be async: the loop waits for them before its next decision. */
export type LeadershipListener = (t: LeadershipTransition) => void | Promise<void>;

/** Outcome of one renewal: renewed, refused by the database (not ours any more), or no answer. */
export type RenewOutcome = 'renewed' | 'refused' | 'error';

/** What the rule sees. */
export interface LeadershipState {
  readonly role: Role;
  /** Clock time at the start of the last good renewal (or of the takeover). */
  readonly lastRenewOk: number;
  readonly hasPeer: boolean;
  readonly peerAlive: boolean;
}

/**
 * The decision rule, in one place. Today: an active steps down when the database refuses a
 * renewal, or when no renewal has succeeded for renewDeadlineMs (measured from the start of
 * the last good one, so it is standby before its lease can lapse); a standby tries to acquire
 * at every poll, slowly while its peer answers and fast otherwise.
 */
export class LeadershipRule {
  constructor(private readonly o: LeadershipOptions) {}

  /** After a renewal: the reason to step down, or null to stay active. */
  afterRenew(outcome: RenewOutcome): StepDownReason | null {
    return outcome === 'refused' ? 'leader lease lost' : null;
  }

  /** Checked by the watchdog: the reason to step down now, or null. */
  deadline(s: LeadershipState, now: number): StepDownReason | null {
    return s.role === 'active' && now - s.lastRenewOk > this.o.renewDeadlineMs ? 'lease renewal deadline passed' : null;
  }

  /** Whether a standby should try to take the lease at this poll. */
  shouldTryAcquire(_s: LeadershipState): boolean {
    return true;
  }

  /** Wait before the next election step. */
  nextCheckMs(s: LeadershipState): number {
    if (s.role === 'active') return this.o.renewMs;
    return s.hasPeer && s.peerAlive ? this.o.standbyPollMs : this.o.fastPollMs;
  }
}

export interface LeadershipDeps {
  lease: LeaseStore;
  opts: LeadershipOptions;
  /** Monotonic ms. */
  clock: () => number;
  log: Logger;
  /** Asks the peer booster whether it answers; null without a peer. */
  probePeer?: (() => Promise<boolean>) | null;
  /** For the logs only. */
  peerUrl?: string | null;
  timers?: LeadershipTimers;
  /** The URL this booster advertises (its own activeUrl once active). */
  selfUrl: () => string;
}

/** How often the watchdog looks at the renewal deadline. */
const WATCHDOG_MS = 25;
/** A standby reads the lease row (active URL, epoch) every this many polls. */
const READ_EVERY = 4;

export class Leadership {
  #role: Role = 'standby';
  #epoch = 0;
  /** Newest leader epoch known from the lease row (what a standby reports and, when it serves, sends). */
  #leaderEpoch = 0;
  #activeUrl: string | null = null;
  #peerAlive = false;
  #lastRenewOk = 0;
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
    return this.#peerAlive;
  }

  get state(): LeadershipState {
    return { role: this.#role, lastRenewOk: this.#lastRenewOk, hasPeer: !!this.d.probePeer, peerAlive: this.#peerAlive };
  }

  /** Subscribes to transitions; returns the unsubscribe function. */
  onTransition(l: LeadershipListener): () => void {
    this.#listeners.push(l);
    return () => {
      const i = this.#listeners.indexOf(l);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  /** First election step at once, then the loop, the watchdog and the peer probe. */
  async start(): Promise<void> {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#watchdog = this.#timers.setInterval(() => this.checkDeadline(), WATCHDOG_MS);
    if (this.d.probePeer) this.#probeTimer = this.#timers.setInterval(() => void this.probe(), this.d.opts.probeMs);
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

  async #renew(): Promise<void> {
    const started = this.d.clock();
    const myEpoch = this.#epoch;
    let outcome: RenewOutcome;
    try {
      outcome = (await this.d.lease.renew(myEpoch)) ? 'renewed' : 'refused';
    } catch (err) {
      this.d.log.warn({ err }, 'leader lease renewal failed');
      outcome = 'error';
    }
    // A step-down (watchdog) or a new term while we waited makes this answer stale.
    if (this.#role !== 'active' || this.#epoch !== myEpoch) return;
    if (outcome === 'renewed') this.#lastRenewOk = started;
    const reason = this.#rule.afterRenew(outcome);
    if (reason) this.#stepDown(reason);
  }

  async #standbyStep(): Promise<void> {
    if (!this.#rule.shouldTryAcquire(this.state)) return;
    const got = await this.d.lease.tryAcquire();
    if (got !== null && !this.#stopped) {
      await this.#becomeActive(got);
      return;
    }
    if (this.#standbyTicks++ % READ_EVERY === 0) {
      const info = await this.d.lease.read();
      this.#activeUrl = info.live ? info.holderUrl : null;
      this.#leaderEpoch = info.epoch;
    }
  }

  /** Watchdog: step down before the lease can lapse when renewals stall. */
  checkDeadline(): void {
    const reason = this.#rule.deadline(this.state, this.d.clock());
    if (reason) this.#stepDown(reason);
  }

  /** Peer probe: a peer that stops answering makes the standby try the lease at once. */
  async probe(): Promise<void> {
    if (!this.d.probePeer || this.#role === 'active' || this.#stopped) return;
    const alive = await this.d.probePeer().catch(() => false);
    const was = this.#peerAlive;
    this.#peerAlive = alive;
    if (alive && !was) this.d.log.info({ peer: this.d.peerUrl }, 'peer booster answers');
    if (!alive && was) {
      this.d.log.warn({ peer: this.d.peerUrl }, 'peer booster does not answer; watching the lease closely');
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

  async #becomeActive(epoch: number): Promise<void> {
    this.#role = 'active';
    this.#epoch = epoch;
    this.#activeUrl = this.d.selfUrl();
    this.#lastRenewOk = this.d.clock();
    this.d.log.info({ epoch }, 'this booster is now the active');
    await this.#emit({ kind: 'became-active', epoch });
  }

  #stepDown(reason: StepDownReason): void {
    if (this.#role !== 'active') return;
    const epoch = this.#epoch;
    this.#role = 'standby';
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
   * its next poll. Returns the released epoch, or null when this booster was not active.
   * Emits no step-down (the caller records the release).
   */
  async resign(): Promise<number | null> {
    this.stop();
    if (this.#role !== 'active') return null;
    const epoch = this.#epoch;
    this.#role = 'standby';
    await this.d.lease.release(epoch).catch((err) => this.d.log.warn({ err }, 'could not release the leader lease; it lapses by itself'));
    return epoch;
  }
}
