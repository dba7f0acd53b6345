import type { LicensePayload } from './format.js';

/**
 * Pure evaluation of the cluster's license state: no clock, no database. The gate and the
 * admin page both call this with what they read, so they can never disagree on the rules.
 */
export const DAY_MS = 86_400_000;
export const TRIAL_DAYS = 7;
/** Paid licenses warn this many days before they expire. */
export const WARN_DAYS = 30;
/** A clock this far behind the high-water mark counts as "moved backwards" (NTP steps are smaller). */
export const CLOCK_BACK_TOLERANCE_MS = 60_000;

export interface TrialRecord {
  clusterId: string;
  trialStartedAt: Date;
  /** Highest time ever seen by any booster or admin page. */
  highWaterAt: Date;
  clockBackAt: Date | null;
}

export type LicenseState = 'trial' | 'licensed' | 'grace' | 'expired';

export type LicenseNotice =
  | { kind: 'clock_backwards'; code: 'COMMON_ERR_LICENSE_CLOCK_BACKWARDS'; behindMs: number; highWaterAt: string }
  | { kind: 'expires_soon'; daysLeft: number; expiresAt: string }
  | { kind: 'grace'; daysLeft: number; expiresAt: string }
  | { kind: 'trial_ending'; daysLeft: number }
  | { kind: 'server_limit'; code: 'BOOSTER_ERR_LICENSE_SERVER_LIMIT'; licensed: number; used: number }
  | { kind: 'stored_license_invalid'; code: string }
  | { kind: 'license_required'; code: 'BOOSTER_ERR_LICENSE_REQUIRED' };

export interface LicenseEvaluation {
  state: LicenseState;
  daysLeft: number | null;
  customer?: string;
  expiresAt?: string;
  licenseId?: string;
  clusterId: string | null;
  servers: { licensed: number | null; used: number };
  /** False: data plane gated, step dispatch paused. */
  allowsDistribution: boolean;
  maxServers: number | null;
  trialStartedAt: string | null;
  trialEndsAt: string | null;
  /**
   * When the current state ends (ISO): the trial, the license's validity, or its grace period;
   * null for a license that never expires, and once expired. What the expiry metric counts down to.
   */
  periodEndsAt: string | null;
  /** max(now, high-water mark): the time every rule is judged at. */
  effectiveNow: string;
  notices: LicenseNotice[];
  /** One English line per notice, prefixed with its code where it has one (for logs and status). */
  warnings: string[];
}

export interface EvaluateInput {
  record: TrialRecord | null;
  /** A license whose signature was verified; null when none is stored. */
  license: LicensePayload | null;
  /** Code of the verification failure of a stored license (it is then ignored). */
  storedLicenseError?: string | null;
  now: Date;
  usedServers: number;
  trialDays?: number;
}

const ceilDays = (ms: number) => Math.max(0, Math.ceil(ms / DAY_MS));

export function evaluateLicense(input: EvaluateInput): LicenseEvaluation {
  const trialDays = input.trialDays ?? TRIAL_DAYS;
  const notices: LicenseNotice[] = [];
  const rec = input.record;
  const nowMs = input.now.getTime();
  const t = Math.max(nowMs, rec?.highWaterAt.getTime() ?? nowMs);
  if (rec && rec.highWaterAt.getTime() - nowMs > CLOCK_BACK_TOLERANCE_MS)
    notices.push({
      kind: 'clock_backwards',
      code: 'COMMON_ERR_LICENSE_CLOCK_BACKWARDS',
      behindMs: rec.highWaterAt.getTime() - nowMs,
      highWaterAt: rec.highWaterAt.toISOString(),
    });
  if (input.storedLicenseError) notices.push({ kind: 'stored_license_invalid', code: input.storedLicenseError });

  const trialEndMs = rec ? rec.trialStartedAt.getTime() + trialDays * DAY_MS : null;
  let out: Omit<LicenseEvaluation, 'notices' | 'warnings' | 'servers' | 'clusterId' | 'trialStartedAt' | 'trialEndsAt' | 'effectiveNow' | 'periodEndsAt'>;
  let periodEndMs: number | null = null;

  const lic = input.license;
  const licActive = lic && t >= Date.parse(lic.notBefore) && (lic.clusterId === null || lic.clusterId === rec?.clusterId);
  if (lic && lic.clusterId !== null && lic.clusterId !== rec?.clusterId)
    notices.push({ kind: 'stored_license_invalid', code: 'COMMON_ERR_LICENSE_WRONG_CLUSTER' });
  const licenseView = lic ? { customer: lic.customer, licenseId: lic.licenseId, ...(lic.expiresAt ? { expiresAt: lic.expiresAt } : {}) } : {};
  if (lic && licActive && (lic.expiresAt === null || t < Date.parse(lic.expiresAt))) {
    const daysLeft = lic.expiresAt === null ? null : ceilDays(Date.parse(lic.expiresAt) - t);
    if (daysLeft !== null && daysLeft <= WARN_DAYS) notices.push({ kind: 'expires_soon', daysLeft, expiresAt: lic.expiresAt! });
    periodEndMs = lic.expiresAt === null ? null : Date.parse(lic.expiresAt);
    out = { state: 'licensed', daysLeft, ...licenseView, allowsDistribution: true, maxServers: lic.limits.maxServers };
  } else if (lic && licActive && t < Date.parse(lic.expiresAt!) + lic.graceDays * DAY_MS) {
    const daysLeft = ceilDays(Date.parse(lic.expiresAt!) + lic.graceDays * DAY_MS - t);
    notices.push({ kind: 'grace', daysLeft, expiresAt: lic.expiresAt! });
    periodEndMs = Date.parse(lic.expiresAt!) + lic.graceDays * DAY_MS;
    out = { state: 'grace', daysLeft, ...licenseView, allowsDistribution: true, maxServers: lic.limits.maxServers };
  } else if (trialEndMs === null || t < trialEndMs) {
    // No record yet (before the first booster start): the trial has not begun, so it is whole.
    const daysLeft = trialEndMs === null ? trialDays : ceilDays(trialEndMs - t);
    if (daysLeft <= 2) notices.push({ kind: 'trial_ending', daysLeft });
    periodEndMs = trialEndMs ?? t + trialDays * DAY_MS;
    out = { state: 'trial', daysLeft, allowsDistribution: true, maxServers: null };
  } else {
    notices.push({ kind: 'license_required', code: 'BOOSTER_ERR_LICENSE_REQUIRED' });
    out = { state: 'expired', daysLeft: 0, ...licenseView, allowsDistribution: false, maxServers: lic && licActive ? lic.limits.maxServers : null };
  }
  if (out.maxServers !== null && input.usedServers > out.maxServers)
    notices.push({ kind: 'server_limit', code: 'BOOSTER_ERR_LICENSE_SERVER_LIMIT', licensed: out.maxServers, used: input.usedServers });

  return {
    ...out,
    clusterId: rec?.clusterId ?? null,
    servers: { licensed: out.maxServers, used: input.usedServers },
    trialStartedAt: rec ? rec.trialStartedAt.toISOString() : null,
    trialEndsAt: trialEndMs === null ? null : new Date(trialEndMs).toISOString(),
    periodEndsAt: periodEndMs === null ? null : new Date(periodEndMs).toISOString(),
    effectiveNow: new Date(t).toISOString(),
    notices,
    warnings: notices.map(noticeText),
  };
}

export function noticeText(n: LicenseNotice): string {
  switch (n.kind) {
    case 'clock_backwards':
      return `${n.code}: the clock is ${Math.round(n.behindMs / 1000)} s behind the latest time seen (${n.highWaterAt}); periods are judged at the latest time seen`;
    case 'expires_soon':
      return `license expires in ${n.daysLeft} day(s) (${n.expiresAt})`;
    case 'grace':
      return `license expired at ${n.expiresAt}; grace period ends in ${n.daysLeft} day(s)`;
    case 'trial_ending':
      return `trial ends in ${n.daysLeft} day(s)`;
    case 'server_limit':
      return `${n.code}: ${n.used} servers registered, ${n.licensed} licensed; servers beyond the licensed count get no traffic`;
    case 'stored_license_invalid':
      return `${n.code}: the stored license is not valid and is ignored`;
    case 'license_required':
      return `${n.code}: the trial has ended and no valid license is installed; upload one at /admin/settings`;
  }
}
