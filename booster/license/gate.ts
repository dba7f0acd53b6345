import type { Database } from '../../common/db/create-database.js';
import type { Logger } from '../../common/log.js';

/**
 * The booster's view of the license. CONTRACT between the booster core (which calls it) and
 * the license module (which implements it): keep these signatures.
 *
 * STUB: always open. The License issue replaces the implementation behind createLicenseGate.
 */
export interface LicenseStatus {
  state: 'trial' | 'licensed' | 'grace' | 'expired';
  daysLeft: number | null;
  customer?: string;
  expiresAt?: string;
  clusterId: string | null;
  servers: { licensed: number | null; used: number };
  warnings: string[];
}

export interface LicenseGate {
  /** Records the trial start (database clock) on the first booster start, then refreshes periodically. */
  start(): Promise<void>;
  /** Re-reads license and trial state from the database now (after an upload). */
  refresh(): Promise<void>;
  status(usedServers: number): LicenseStatus;
  /** False when the trial ended with no valid license: data plane gated, step dispatch paused. */
  allowsDistribution(): boolean;
  /** Servers beyond this count are not routed to (null: unlimited). */
  maxServers(): number | null;
  close(): Promise<void>;
}

/** Paths that keep working while the gate is closed: admin, login, license upload, health, patching. */
export function isGateExempt(path: string): boolean {
  return /^\/(admin|login|logout|static|healthz|readyz|_booster)(\/|$|\?)/.test(path) || /^\/api\/(auth|admin)(\/|$|\?)/.test(path);
}

/** The 503 answer while gated: HTML for browsers, JSON for API clients. */
export function renderGatedResponse(accept: string | undefined): { status: number; headers: Record<string, string>; body: string } {
  const json = { code: 'BOOSTER_ERR_LICENSE_REQUIRED', message: 'The trial has ended and no valid license is installed. An administrator can upload one at /admin/settings (System settings → Booster license data → Upload).' };
  if (accept?.includes('text/html'))
    return {
      status: 503,
      headers: { 'content-type': 'text/html; charset=utf-8', 'retry-after': '60' },
      body: `<!doctype html><title>License required</title><h1>License required</h1><p>${json.message}</p><p><a href="/admin/settings">Open System settings</a></p>`,
    };
  return { status: 503, headers: { 'content-type': 'application/json', 'retry-after': '60' }, body: JSON.stringify(json) };
}

export function createLicenseGate(_deps: { db: Database; log: Logger; nodeId: string; now?: () => Date }): LicenseGate {
  return {
    async start() {},
    async refresh() {},
    status: (used) => ({ state: 'trial', daysLeft: 7, clusterId: null, servers: { licensed: null, used }, warnings: [] }),
    allowsDistribution: () => true,
    maxServers: () => null,
    async close() {},
  };
}
