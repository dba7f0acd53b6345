import type { Database } from '../db/create-database.js';
import { isOmflowError, type OmflowError } from '../errors.js';
import type { LicensePayload } from './format.js';
import { evaluateLicense, type LicenseEvaluation } from './state.js';
import { auditLicense, ensureLicenseState, observeTime, readLicenseState, storeLicense } from './store.js';
import type { LicenseVerifier, VerifiedLicense } from './verifier.js';

/**
 * The two uses of license state, shared by the booster gate and the admin page:
 * evaluating what is stored now, and checking/applying an upload.
 */

/** Reads the state (creating it with the database clock on first use), moves the high-water mark, verifies the stored license again, evaluates. */
export async function loadLicenseEvaluation(
  db: Database,
  verifier: LicenseVerifier,
  opts: { now?: Date; usedServers?: number; trialDays?: number; readOnly?: boolean } = {},
): Promise<LicenseEvaluation> {
  const now = opts.now ?? (await db.now());
  // readOnly (admin page): never starts the trial nor moves the mark; only boosters record time.
  const state = opts.readOnly ? await readLicenseState(db) : await observeTime(db, now);
  let license: LicensePayload | null = null;
  let storedLicenseError: string | null = null;
  if (state?.licenseText) {
    try {
      // The database carries the license but is not trusted for it: verify the signature each time.
      license = verifier.verify(state.licenseText);
    } catch (err) {
      storedLicenseError = isOmflowError(err) ? err.code : 'COMMON_ERR_LICENSE_MALFORMED';
    }
  }
  return evaluateLicense({ record: state, license, storedLicenseError, now, usedServers: opts.usedServers ?? 0, trialDays: opts.trialDays });
}

export type UploadCheck = { ok: true; license: VerifiedLicense; preview: LicensePreview } | { ok: false; error: OmflowError };

export interface LicensePreview {
  licenseId: string;
  customer: string;
  issuedAt: string;
  notBefore: string;
  expiresAt: string | null;
  graceDays: number;
  clusterId: string | null;
  maxServers: number | null;
  features: string[];
  keyId: string;
}

export function previewOf(l: LicensePayload): LicensePreview {
  return {
    licenseId: l.licenseId,
    customer: l.customer,
    issuedAt: l.issuedAt,
    notBefore: l.notBefore,
    expiresAt: l.expiresAt,
    graceDays: l.graceDays,
    clusterId: l.clusterId,
    maxServers: l.limits.maxServers,
    features: l.features,
    keyId: l.keyId,
  };
}

/** Verifies an uploaded file against this cluster at the effective time (never earlier than the high-water mark). */
export async function checkUpload(db: Database, verifier: LicenseVerifier, text: string | Buffer, opts: { now?: Date } = {}): Promise<UploadCheck> {
  const state = await ensureLicenseState(db);
  const now = opts.now ?? (await db.now());
  const effective = new Date(Math.max(now.getTime(), state.highWaterAt.getTime()));
  try {
    const license = verifier.verifyForCluster(text, { now: effective, clusterId: state.clusterId });
    return { ok: true, license, preview: previewOf(license) };
  } catch (err) {
    if (isOmflowError(err)) return { ok: false, error: err };
    throw err;
  }
}

/**
 * The "Apply" step: verifies again (the preview's copy came back from the browser), stores,
 * and audits the result either way. Returns the check result.
 */
export async function applyUpload(
  db: Database,
  verifier: LicenseVerifier,
  text: string | Buffer,
  opts: { actor: string | null; now?: Date; stage?: 'preview' | 'apply' },
): Promise<UploadCheck> {
  const stage = opts.stage ?? 'apply';
  const result = await checkUpload(db, verifier, text, opts);
  if (result.ok) {
    if (stage === 'apply') await storeLicense(db, { text: result.license.text, licenseId: result.license.licenseId, actor: opts.actor });
    await auditLicense(db, {
      actor: opts.actor,
      resultCode: stage === 'apply' ? 'APPLIED' : 'PREVIEWED',
      licenseId: result.license.licenseId,
      customer: result.license.customer,
      details: { stage, expiresAt: result.license.expiresAt, maxServers: result.license.limits.maxServers },
    });
  } else {
    await auditLicense(db, { actor: opts.actor, resultCode: result.error.code, details: { stage, error: result.error.details ?? null } });
  }
  return result;
}
