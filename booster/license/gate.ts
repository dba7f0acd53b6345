import type { Database } from '../../common/db/create-database.js';
import { createLicenseVerifier, ensureLicenseState, type LicenseEvaluation, type LicenseVerifier, loadLicenseEvaluation } from '../../common/license/index.js';
import type { Logger } from '../../common/log.js';
import { LicenseGateErrors as LicenseErrors } from './errors.js';

/**
 * The booster's view of the license. CONTRACT between the booster core (which calls it) and
 * the license module (which implements it): keep these signatures.
 */
export interface LicenseStatus {
  state: 'trial' | 'licensed' | 'grace' | 'expired';
  daysLeft: number | null;
  customer?: string;
  expiresAt?: string;
  /** When the current state ends: the trial, the license, its grace period (null: never, or already expired). */
  periodEndsAt?: string | null;
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

const GATED_MESSAGE =
  'The trial has ended and no valid license is installed. Nothing was deleted: queued work waits. An administrator can upload a license at /admin/settings (System settings → Booster license data → Upload).';
const GATED_MESSAGE_JA =
  '試用期間が終了し、有効なライセンスがありません。データは削除されていません（待機中の処理はそのまま残っています）。管理者が /admin/settings（システム設定 → Booster ライセンスデータ → アップロード）からライセンスをアップロードしてください。';

/** The 503 answer while gated: HTML for browsers, JSON for API clients. */
export function renderGatedResponse(accept: string | undefined): { status: number; headers: Record<string, string>; body: string } {
  const code = LicenseErrors.BOOSTER_ERR_LICENSE_REQUIRED.code;
  const json = { code, message: GATED_MESSAGE, adminUrl: '/admin/settings' };
  if (accept?.includes('text/html'))
    return {
      status: 503,
      headers: { 'content-type': 'text/html; charset=utf-8', 'retry-after': '60', 'cache-control': 'no-store' },
      body: [
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>License required — OMFLOW Booster</title>',
        '<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:4rem auto;padding:0 1rem;color:#222}h1{color:#a40000}code{background:#eee;padding:0 .25em}a.button{display:inline-block;background:#1f5fbf;color:#fff;padding:.5em 1em;border-radius:4px;text-decoration:none}</style></head><body>',
        `<h1 id="license-required">License required</h1><p>${GATED_MESSAGE}</p>`,
        `<p lang="ja">${GATED_MESSAGE_JA}</p>`,
        `<p><a class="button" href="/admin/settings">Open System settings</a></p><p><small>Code: <code>${code}</code></small></p>`,
        '</body></html>',
      ].join(''),
    };
  return {
    status: 503,
    headers: { 'content-type': 'application/json; charset=utf-8', 'retry-after': '60', 'cache-control': 'no-store' },
    body: JSON.stringify(json),
  };
}

export interface LicenseGateDeps {
  db: Database;
  log: Logger;
  nodeId: string;
  /** Injected clock (tests). Without it, every evaluation uses the database's clock. */
  now?: () => Date;
  /** Verifier with the trusted keys; default: the pinned vendor keys. Tests inject their own. */
  verifier?: LicenseVerifier;
  /** How often the gate re-reads the database by itself (an upload also notifies it directly). */
  refreshMs?: number;
}

/**
 * Reads license_state every refreshMs (default 2 s) and on refresh(); everything else answers
 * from the last evaluation, so the data plane never waits on the database for the gate.
 */
export function createLicenseGate(deps: LicenseGateDeps): LicenseGate {
  const verifier = deps.verifier ?? createLicenseVerifier();
  const refreshMs = deps.refreshMs ?? 2000;
  let current: LicenseEvaluation | null = null;
  let timer: NodeJS.Timeout | null = null;
  let inflight: Promise<void> | null = null;
  let closed = false;

  async function evaluate(): Promise<void> {
    const next = await loadLicenseEvaluation(deps.db, verifier, { now: deps.now?.() });
    const prev = current;
    current = next;
    // Log transitions only (an unchanged state is a no-op).
    if (!prev || prev.state !== next.state || prev.allowsDistribution !== next.allowsDistribution) {
      const entry = { node: deps.nodeId, state: next.state, daysLeft: next.daysLeft, customer: next.customer, clusterId: next.clusterId };
      if (!next.allowsDistribution)
        deps.log.error(
          { ...entry, code: LicenseErrors.BOOSTER_ERR_LICENSE_REQUIRED.code },
          'license gate closed: trial ended and no valid license; data plane answers 503, step dispatch paused',
        );
      else deps.log.info(entry, prev && !prev.allowsDistribution ? 'license gate lifted' : 'license state');
    }
    const newWarnings = next.warnings.filter((w) => !prev?.warnings.includes(w));
    for (const w of newWarnings) deps.log.warn({ node: deps.nodeId }, `license: ${w}`);
  }

  let queued: Promise<void> | null = null;
  function refresh(): Promise<void> {
    // At most one read runs; a call during a read queues exactly one more, so a refresh() after an
    // upload (or a clock change) always sees the state as of the call, never an older read.
    if (inflight !== null) {
      queued ??= inflight.then(() => {
        queued = null;
        return refresh();
      });
      return queued;
    }
    inflight = evaluate()
      .catch((err) => {
        // Keep the last known state: a database blip must not open or close the gate.
        deps.log.warn({ err }, 'license state refresh failed; keeping the last known state');
      })
      .finally(() => {
        inflight = null;
      });
    return inflight;
  }

  return {
    async start() {
      closed = false;
      await ensureLicenseState(deps.db);
      await refresh();
      if (!timer && !closed) {
        timer = setInterval(() => void refresh(), refreshMs);
        timer.unref();
      }
    },
    refresh,
    status(used) {
      if (!current) return { state: 'trial', daysLeft: null, clusterId: null, servers: { licensed: null, used }, warnings: ['license state not read yet'] };
      const warnings = current.warnings.filter((w) => !w.startsWith(LicenseErrors.BOOSTER_ERR_LICENSE_SERVER_LIMIT.code));
      const licensed = current.maxServers;
      if (licensed !== null && used > licensed)
        warnings.push(
          `${LicenseErrors.BOOSTER_ERR_LICENSE_SERVER_LIMIT.code}: ${used} servers registered, ${licensed} licensed; servers beyond the licensed count get no traffic`,
        );
      return {
        state: current.state,
        daysLeft: current.daysLeft,
        ...(current.customer ? { customer: current.customer } : {}),
        ...(current.expiresAt ? { expiresAt: current.expiresAt } : {}),
        periodEndsAt: current.periodEndsAt,
        clusterId: current.clusterId,
        servers: { licensed, used },
        warnings,
      };
    },
    // Until the first read succeeds the gate stays open: a booster must not refuse traffic because it has just started.
    allowsDistribution: () => current?.allowsDistribution ?? true,
    maxServers: () => current?.maxServers ?? null,
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      timer = null;
      await inflight;
    },
  };
}
