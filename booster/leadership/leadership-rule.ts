import type { LeaseInfo } from './lease-store.js';
import type { PeerState } from './peer-probe.js';

/**
 * When an active steps down and when a standby tries to take the lease: the decision rule of the
 * election loop (leadership.ts), pure and alone, so its safety argument (ADR 0008) reads in one place.
 */
export type Role = 'active' | 'standby';

export interface LeadershipOptions {
  renewMs: number;
  /** No renewal confirmed for this long (< lease length): the lease may lapse, so lease-needing work pauses. */
  renewDeadlineMs: number;
  standbyPollMs: number;
  fastPollMs: number;
  probeMs: number;
  /**
   * A standby whose peer still answers "active" takes a lapsed lease only after it has seen it
   * lapsed this long while the database answered it (the active lost the database, not the
   * standby). Default RIDE_THROUGH_GRACE_MS.
   */
  rideThroughGraceMs?: number;
}

export const RIDE_THROUGH_GRACE_MS = 10_000;

export type StepDownReason = 'leader lease lost' | 'newer epoch seen';

/** Outcome of one renewal: renewed, refused by the database (not ours any more), or no answer. */
export type RenewOutcome = 'renewed' | 'refused' | 'error';

/** What the rule sees. */
export interface LeadershipState {
  readonly role: Role;
  readonly epoch: number;
  /** Clock time at the start of the last good renewal (or of the acquisition). */
  readonly lastRenewOk: number;
  readonly hasPeer: boolean;
  readonly peer: PeerState;
  /** Standby: since when the lease row has been seen lapsed while the peer answered "active" (null: not seen). */
  readonly lapsedSince: number | null;
}

export type ReacquireDecision =
  | { kind: 'regained'; epoch: number }
  | { kind: 'adopt'; epoch: number }
  | { kind: 'step-down'; reason: StepDownReason }
  | { kind: 'retry' };

/**
 * The decision rule, in one place (the safety argument is docs/adr/0008-ride-through-database-outages.md).
 * - The lease is *held* while the last good renewal started less than renewDeadlineMs ago (so it
 *   cannot have lapsed on the database clock); only then does lease-needing work run.
 * - A renewal with no answer changes nothing: the active stays active for the data plane and
 *   keeps retrying ("ride through"); nobody else can take the lease while the database is away.
 * - A refused renewal makes it try to re-acquire at once (that only succeeds on a lapsed
 *   lease, at a new epoch); it steps down only when someone else holds a live lease, or when
 *   anyone (a server's epochSeen, the peer) shows a newer epoch.
 * - A standby tries to acquire when it has no peer, or its peer does not answer or answers
 *   "standby"; not while the peer answers "active", unless it has seen the lease lapsed for
 *   rideThroughGraceMs with the database answering it.
 */
export class LeadershipRule {
  readonly #graceMs: number;
  constructor(private readonly o: LeadershipOptions) {
    this.#graceMs = o.rideThroughGraceMs ?? RIDE_THROUGH_GRACE_MS;
  }

  holdsLease(s: LeadershipState, now: number): boolean {
    return s.role === 'active' && now - s.lastRenewOk < this.o.renewDeadlineMs;
  }

  /** After a renewal: keep going, or find out whether the lease can be taken again. */
  afterRenew(outcome: RenewOutcome): 'keep' | 'reacquire' {
    return outcome === 'refused' ? 'reacquire' : 'keep';
  }

  /** After a refused renewal: what the acquisition and the lease row say. */
  afterReacquire(got: number | null, row: LeaseInfo | null, me: string): ReacquireDecision {
    if (got !== null) return { kind: 'regained', epoch: got };
    if (!row) return { kind: 'retry' };
    if (row.live && row.holder === me) return { kind: 'adopt', epoch: row.epoch };
    if (row.live) return { kind: 'step-down', reason: 'leader lease lost' };
    return { kind: 'retry' };
  }

  /** An epoch seen elsewhere (server heartbeat, peer answer): newer than ours means someone acquired after us. */
  newerEpoch(s: LeadershipState, seen: number): StepDownReason | null {
    return s.role === 'active' && seen > s.epoch ? 'newer epoch seen' : null;
  }

  /** Whether a standby should try to take the lease at this poll. */
  shouldTryAcquire(s: LeadershipState, now: number): boolean {
    if (!s.hasPeer || s.peer !== 'active') return true;
    return s.lapsedSince !== null && now - s.lapsedSince >= this.#graceMs;
  }

  /** Whether the peer is probed: by a standby, and by an active riding through (to learn of a newer active). */
  probes(s: LeadershipState, now: number): boolean {
    return s.role === 'standby' || !this.holdsLease(s, now);
  }

  /** Wait before the next election step. */
  nextCheckMs(s: LeadershipState): number {
    if (s.role === 'active') return this.o.renewMs;
    return s.hasPeer && s.peer === 'active' ? this.o.standbyPollMs : this.o.fastPollMs;
  }
}
