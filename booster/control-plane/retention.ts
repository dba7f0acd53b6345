import type { Database } from '../../common/db/create-database.js';
import { purgeLicenseAudit } from '../../common/license/store.js';
import type { Logger } from '../../common/log.js';
import { purgeSupersededPatchChunks } from '../../common/patch/store.js';
import { purgeFinishedSteps } from '../../common/protocol/steps.js';
import type { BoosterConfig } from '../config.js';
import type { BoosterMetrics } from '../metrics.js';
import type { ClusterStore } from './cluster-store.js';

/**
 * Retention: the one purge loop of the cluster, run by the active booster only (started and
 * stopped with the active role). Each round deletes, table by table, what the OMFLOW_BOOSTER_RETAIN_*
 * settings let go, in bounded batches (OMFLOW_BOOSTER_PURGE_BATCH rows per statement, a short
 * pause between statements) and stops as soon as the lease is not confirmed. What it deleted is
 * counted in omflow_booster_purged_rows_total{table}; omflow_booster_purge_last_success_seconds
 * says when a round last completed.
 */
export type PurgeTable = 'booster_events' | 'steps' | 'license_audit' | 'patch_chunks';

/** Rows a batch may hold, per table; chunks are up to 256 KiB each. */
const CHUNK_BATCH_SHARE = 10;
/** A round stops a table after this many batches (it goes on at the next round). */
export const MAX_BATCHES_PER_ROUND = 1000;
const PAUSE_BETWEEN_BATCHES_MS = 20;
/** The first round after becoming active comes at most this soon. */
const FIRST_ROUND_MS = 60_000;
const DAY_MS = 86_400_000;

export interface RetentionDeps {
  cfg: Pick<BoosterConfig, 'purgeIntervalMs' | 'purgeBatch' | 'retainEventsDays' | 'retainStepsDays' | 'retainLicenseAuditDays' | 'retainPatches'>;
  db: Database;
  store: ClusterStore;
  metrics: BoosterMetrics;
  log: Logger;
  /** Active with a confirmed lease: checked before every batch. */
  allowed: () => boolean;
}

export class Retention {
  #timer: NodeJS.Timeout | null = null;
  #round: Promise<Record<PurgeTable, number>> | null = null;
  #stopped = true;

  constructor(private readonly d: RetentionDeps) {}

  /** The purges this configuration asks for, each a function deleting one batch. */
  #purges(): [PurgeTable, (limit: number) => Promise<number>][] {
    const { cfg, db, store } = this.d;
    const out: [PurgeTable, (limit: number) => Promise<number>][] = [];
    if (cfg.retainEventsDays > 0) out.push(['booster_events', (n) => store.purgeEvents(cfg.retainEventsDays * DAY_MS, n)]);
    if (cfg.retainStepsDays > 0) out.push(['steps', (n) => purgeFinishedSteps(db.knex, cfg.retainStepsDays * DAY_MS, n)]);
    if (cfg.retainLicenseAuditDays > 0) out.push(['license_audit', (n) => purgeLicenseAudit(db, cfg.retainLicenseAuditDays * DAY_MS, n)]);
    if (cfg.retainPatches > 0)
      out.push(['patch_chunks', (n) => purgeSupersededPatchChunks(db, cfg.retainPatches, Math.max(1, Math.floor(n / CHUNK_BATCH_SHARE)))]);
    return out;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#schedule(Math.min(this.d.cfg.purgeIntervalMs, FIRST_ROUND_MS));
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      void this.runOnce()
        .catch((err) => this.d.log.warn({ err }, 'retention purge failed; it runs again at the next round'))
        .finally(() => this.#schedule(this.d.cfg.purgeIntervalMs));
    }, ms);
    this.#timer.unref();
  }

  /** Stops the loop; a round under way ends after its current batch. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#round?.catch(() => {});
  }

  /** One round over every table (one at a time: a second caller shares it). Rows deleted per table. */
  runOnce(): Promise<Record<PurgeTable, number>> {
    this.#round ??= this.#run().finally(() => {
      this.#round = null;
    });
    return this.#round;
  }

  async #run(): Promise<Record<PurgeTable, number>> {
    const deleted: Record<PurgeTable, number> = { booster_events: 0, steps: 0, license_audit: 0, patch_chunks: 0 };
    const batch = this.d.cfg.purgeBatch;
    for (const [table, purge] of this.#purges()) {
      for (let i = 0; i < MAX_BATCHES_PER_ROUND; i++) {
        if (!this.d.allowed()) return deleted;
        const n = await purge(batch);
        if (n === 0) break;
        deleted[table] += n;
        this.d.metrics.purgedRows.labels(table).inc(n);
        await new Promise((r) => setTimeout(r, PAUSE_BETWEEN_BATCHES_MS));
      }
    }
    this.d.metrics.purgeLastSuccess.set(Date.now() / 1000);
    if (Object.values(deleted).some((n) => n > 0)) this.d.log.info({ deleted }, 'retention purge done');
    return deleted;
  }
}
