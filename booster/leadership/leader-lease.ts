import type { Knex } from 'knex';
import { getHelpers } from '../../common/db/helpers/index.js';
import type { LeaseInfo, LeaseStore } from './lease-store.js';

/**
 * The leader lease: one row booster_lease(name='leader'), timed by the database's clock.
 * Acquiring bumps the epoch (strictly increasing); renewing keeps it and only succeeds
 * while the lease has not lapsed and still names us at our epoch. Pure SQL, no timers:
 * the election loop lives in leadership.ts.
 */
export const LEADER = 'leader';

export class LeaderLease implements LeaseStore {
  constructor(
    private readonly knex: Knex,
    private readonly nodeId: string,
    /** Our advertised URL, read at each acquisition (known only once listening). */
    private readonly url: () => string,
    private readonly leaseMs: number,
  ) {}

  /** Takes the lease when it has lapsed; returns the new epoch or null. */
  async tryAcquire(): Promise<number | null> {
    const h = getHelpers(this.knex);
    return this.knex.transaction(async (trx) => {
      const n = await trx('booster_lease')
        .where('name', LEADER)
        .andWhere('expires_at', '<', h.now())
        .update({
          holder: this.nodeId,
          holder_url: this.url(),
          epoch: trx.raw('epoch + 1'),
          acquired_at: h.now(),
          renewed_at: h.now(),
          expires_at: h.nowPlusMs(this.leaseMs),
        });
      if (Number(n) !== 1) return null;
      const row = await trx('booster_lease').select('epoch', 'holder').where('name', LEADER).first();
      return row && row.holder === this.nodeId ? Number(row.epoch) : null;
    });
  }

  /** Extends our lease; false when it is no longer ours (or lapsed). */
  async renew(epoch: number): Promise<boolean> {
    const h = getHelpers(this.knex);
    const n = await this.knex('booster_lease')
      .where({ name: LEADER, holder: this.nodeId, epoch })
      .andWhere('expires_at', '>', h.now())
      .update({ renewed_at: h.now(), expires_at: h.nowPlusMs(this.leaseMs) });
    return Number(n) === 1;
  }

  /** Graceful stop: let the lease lapse now so the standby takes over at its next poll. */
  async release(epoch: number): Promise<void> {
    const h = getHelpers(this.knex);
    await this.knex('booster_lease')
      .where({ name: LEADER, holder: this.nodeId, epoch })
      .update({ expires_at: h.nowPlusMs(-1000) });
  }

  async read(): Promise<LeaseInfo> {
    const h = getHelpers(this.knex);
    const row = await this.knex('booster_lease')
      .select('holder', 'holder_url', 'epoch', this.knex.raw(`CASE WHEN expires_at > ${h.now().toQuery()} THEN 1 ELSE 0 END AS live`))
      .where('name', LEADER)
      .first();
    if (!row) return { holder: null, holderUrl: null, epoch: 0, live: false };
    return { holder: row.holder ?? null, holderUrl: row.holder_url ?? null, epoch: Number(row.epoch), live: Number(row.live) === 1 };
  }
}
