import { randomUUID } from 'node:crypto';
import type { Database } from '../db/create-database.js';
import { getHelpers } from '../db/helpers/index.js';
import { deleteBatch } from '../db/purge.js';
import { CommonErrors } from '../errors.js';
import { CLOCK_BACK_TOLERANCE_MS, type TrialRecord } from './state.js';

/**
 * license_state (one row, id 'cluster') and license_audit. Every time written here comes from
 * the database clock unless a caller passes the time it observed (the injected test clock).
 */
const ROW_ID = 'cluster';

export interface StoredLicenseState extends TrialRecord {
  licenseText: string | null;
  licenseId: string | null;
  uploadedAt: Date | null;
  uploadedBy: string | null;
}

function toState(db: Database, row: Record<string, unknown>): StoredLicenseState {
  const h = getHelpers(db.knex);
  return {
    clusterId: String(row.cluster_id),
    trialStartedAt: h.toDate(row.trial_started_at)!,
    highWaterAt: h.toDate(row.high_water_at)!,
    clockBackAt: h.toDate(row.clock_back_at),
    licenseText: (row.license_text as string | null) ?? null,
    licenseId: (row.license_id as string | null) ?? null,
    uploadedAt: h.toDate(row.uploaded_at),
    uploadedBy: (row.uploaded_by as string | null) ?? null,
  };
}

export async function readLicenseState(db: Database): Promise<StoredLicenseState | null> {
  const row = await db.knex('license_state').where({ id: ROW_ID }).first();
  return row ? toState(db, row) : null;
}

/**
 * Records the trial start and a fresh cluster id on the very first call, with the database's
 * clock; later calls (the other booster, a restart, a failover) find the row and change nothing.
 */
export async function ensureLicenseState(db: Database): Promise<StoredLicenseState> {
  const existing = await readLicenseState(db);
  if (existing) return existing;
  const h = getHelpers(db.knex);
  try {
    await db.knex('license_state').insert({
      id: ROW_ID,
      cluster_id: randomUUID(),
      trial_started_at: h.now(),
      high_water_at: h.now(),
      clock_back_at: null,
      updated_at: h.now(),
    });
  } catch (err) {
    // Both boosters started at once: the other one's row wins.
    if (!CommonErrors.COMMON_ERR_DB_UNIQUE.is(err)) throw err;
  }
  const row = await readLicenseState(db);
  if (!row) throw new Error('license_state row vanished after insert');
  return row;
}

/**
 * Moves the high-water mark forward to `seen` (never backwards) and records when a clock was
 * seen behind it. Returns the state after the update.
 */
export async function observeTime(db: Database, seen: Date): Promise<StoredLicenseState> {
  const state = await ensureLicenseState(db);
  const h = getHelpers(db.knex);
  if (seen.getTime() > state.highWaterAt.getTime()) {
    // Conditional update: concurrent observers only ever move it forward.
    await db.knex('license_state').where({ id: ROW_ID }).andWhere('high_water_at', '<', seen).update({ high_water_at: seen, updated_at: h.now() });
    return { ...state, highWaterAt: seen };
  }
  if (state.highWaterAt.getTime() - seen.getTime() > CLOCK_BACK_TOLERANCE_MS && !state.clockBackAt) {
    await db.knex('license_state').where({ id: ROW_ID }).update({ clock_back_at: seen, updated_at: h.now() });
    return { ...state, clockBackAt: seen };
  }
  return state;
}

export async function storeLicense(db: Database, lic: { text: string; licenseId: string; actor: string | null; at?: Date }): Promise<void> {
  await ensureLicenseState(db);
  const h = getHelpers(db.knex);
  await db
    .knex('license_state')
    .where({ id: ROW_ID })
    .update({
      license_text: lic.text,
      license_id: lic.licenseId,
      uploaded_at: lic.at ?? h.now(),
      uploaded_by: lic.actor,
      updated_at: h.now(),
    });
}

export interface LicenseAuditEntry {
  id: number;
  actor: string | null;
  resultCode: string;
  licenseId: string | null;
  customer: string | null;
  details: unknown;
  createdAt: Date;
}

/** Every upload attempt (preview or apply, accepted or refused) leaves one row. */
export async function auditLicense(
  db: Database,
  e: { actor: string | null; resultCode: string; licenseId?: string | null; customer?: string | null; details?: unknown },
): Promise<void> {
  const h = getHelpers(db.knex);
  await db.knex('license_audit').insert({
    actor: e.actor?.slice(0, 128) ?? null,
    result_code: e.resultCode.slice(0, 64),
    license_id: e.licenseId?.slice(0, 64) ?? null,
    customer: e.customer?.slice(0, 255) ?? null,
    details: e.details === undefined ? null : JSON.stringify(e.details),
    created_at: h.now(),
  });
}

export async function listLicenseAudit(db: Database, limit = 20): Promise<LicenseAuditEntry[]> {
  const h = getHelpers(db.knex);
  const rows = await db.knex('license_audit').orderBy('id', 'desc').limit(limit);
  return rows.map((r: Record<string, unknown>) => ({
    id: Number(r.id),
    actor: (r.actor as string | null) ?? null,
    resultCode: String(r.result_code),
    licenseId: (r.license_id as string | null) ?? null,
    customer: (r.customer as string | null) ?? null,
    details: h.fromJson(r.details),
    createdAt: h.toDate(r.created_at)!,
  }));
}

/** Retention: one batch of audit rows older than `olderThanMs`. */
export function purgeLicenseAudit(db: Database, olderThanMs: number, limit: number): Promise<number> {
  const h = getHelpers(db.knex);
  return deleteBatch(db.knex, 'license_audit', (q) => q.where('created_at', '<', h.nowPlusMs(-olderThanMs)), limit);
}
