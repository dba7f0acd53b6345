/**
 * The port between the election loop and the lease row: what `Leadership` asks of the lease,
 * implemented in SQL by `LeaderLease` (leader-lease.ts) and in memory by the tests.
 */
export interface LeaseInfo {
  holder: string | null;
  holderUrl: string | null;
  epoch: number;
  /** False when the lease has lapsed (database clock). */
  live: boolean;
}

export interface LeaseStore {
  /** Takes the lease when it has lapsed: the new, larger epoch, or null. */
  tryAcquire(): Promise<number | null>;
  /** Extends our lease at this epoch; false when it is no longer ours. */
  renew(epoch: number): Promise<boolean>;
  /** Lets our lease lapse now (graceful stop). */
  release(epoch: number): Promise<void>;
  read(): Promise<LeaseInfo>;
}
