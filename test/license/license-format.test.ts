import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  createLicenseVerifier,
  evaluateLicense,
  LicenseErrors,
  MAX_LICENSE_FILE_BYTES,
  PINNED_LICENSE_KEYS,
  signLicense,
  type TrialRecord,
} from '../../common/license/index.js';
import { DAY, issue, payload, tamper, testKeyPair } from './helpers.js';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

describe('license file verification', () => {
  const pair = testKeyPair();
  const verifier = createLicenseVerifier({ keys: pair.keys });

  it('accepts a license signed with an injected key and returns its payload', () => {
    const lic = verifier.verify(issue(pair));
    expect(lic.customer).toBe('ACME K.K.');
    expect(lic.limits.maxServers).toBe(4);
    expect(verifier.keyIds()).toEqual(['test-key-1']);
  });

  it('the default verifier trusts only the pinned vendor keys, so a self-made key is unknown', () => {
    expect(Object.keys(PINNED_LICENSE_KEYS).length).toBeGreaterThan(0);
    expect(codeOf(() => createLicenseVerifier().verify(issue(pair)))).toBe('COMMON_ERR_LICENSE_UNKNOWN_KEY');
  });

  it('forged signature: payload altered after signing', () => {
    expect(codeOf(() => verifier.verify(tamper(issue(pair))))).toBe('COMMON_ERR_LICENSE_BAD_SIGNATURE');
  });

  it('forged signature: signed by another key under a trusted key id', () => {
    const other = generateKeyPairSync('ed25519').privateKey;
    expect(codeOf(() => verifier.verify(signLicense(payload(), other)))).toBe('COMMON_ERR_LICENSE_BAD_SIGNATURE');
  });

  it('wrong key id', () => {
    expect(codeOf(() => verifier.verify(issue(pair, { keyId: 'someone-else' })))).toBe('COMMON_ERR_LICENSE_UNKNOWN_KEY');
  });

  it('malformed files are named precisely', () => {
    expect(codeOf(() => verifier.verify('hello'))).toBe('COMMON_ERR_LICENSE_MALFORMED');
    expect(codeOf(() => verifier.verify('{"format":"omflow-license/1","payload":"e30=","signature":"AA=="}'))).toBe('COMMON_ERR_LICENSE_MALFORMED');
    expect(codeOf(() => verifier.verify('x'.repeat(MAX_LICENSE_FILE_BYTES + 1)))).toBe('COMMON_ERR_LICENSE_TOO_LARGE');
  });

  it('validity window and cluster binding', () => {
    const now = new Date();
    expect(
      codeOf(() =>
        verifier.verifyForCluster(issue(pair, { expiresAt: new Date(now.getTime() - 20 * DAY).toISOString(), graceDays: 14 }), { now, clusterId: 'c1' }),
      ),
    ).toBe('COMMON_ERR_LICENSE_EXPIRED');
    // Inside the grace period it is still accepted.
    expect(
      codeOf(() =>
        verifier.verifyForCluster(issue(pair, { expiresAt: new Date(now.getTime() - 2 * DAY).toISOString(), graceDays: 14 }), { now, clusterId: 'c1' }),
      ),
    ).toBeUndefined();
    expect(codeOf(() => verifier.verifyForCluster(issue(pair, { notBefore: new Date(now.getTime() + DAY).toISOString() }), { now, clusterId: 'c1' }))).toBe(
      'COMMON_ERR_LICENSE_NOT_YET_VALID',
    );
    expect(codeOf(() => verifier.verifyForCluster(issue(pair, { clusterId: 'c2' }), { now, clusterId: 'c1' }))).toBe('COMMON_ERR_LICENSE_WRONG_CLUSTER');
    expect(codeOf(() => verifier.verifyForCluster(issue(pair, { clusterId: 'c1' }), { now, clusterId: 'c1' }))).toBeUndefined();
  });

  it('every code it throws is in the catalogue', () => {
    for (const c of ['MALFORMED', 'UNKNOWN_KEY', 'BAD_SIGNATURE', 'NOT_YET_VALID', 'EXPIRED', 'WRONG_CLUSTER', 'CLOCK_BACKWARDS'])
      expect(Object.keys(LicenseErrors)).toContain(`COMMON_ERR_LICENSE_${c}`);
  });
});

describe('trial and license evaluation (pure)', () => {
  const start = new Date('2026-11-01T00:00:00Z');
  const rec = (over: Partial<TrialRecord> = {}): TrialRecord => ({ clusterId: 'c1', trialStartedAt: start, highWaterAt: start, clockBackAt: null, ...over });
  const at = (days: number) => new Date(start.getTime() + days * DAY);

  it('trial counts down 7 days from the recorded start, then gates', () => {
    const e2 = evaluateLicense({ record: rec(), license: null, now: at(2), usedServers: 3 });
    expect(e2).toMatchObject({ state: 'trial', daysLeft: 5, allowsDistribution: true, servers: { licensed: null, used: 3 } });
    const e8 = evaluateLicense({ record: rec(), license: null, now: at(7.01), usedServers: 3 });
    expect(e8).toMatchObject({ state: 'expired', daysLeft: 0, allowsDistribution: false });
    expect(e8.warnings.join()).toContain('BOOSTER_ERR_LICENSE_REQUIRED');
  });

  it('clock set backwards never extends the trial and is reported', () => {
    // A booster saw day 8; then the clock is set back to day 1.
    const e = evaluateLicense({ record: rec({ highWaterAt: at(8) }), license: null, now: at(1), usedServers: 1 });
    expect(e.state).toBe('expired');
    expect(e.allowsDistribution).toBe(false);
    expect(e.notices.map((n) => n.kind)).toContain('clock_backwards');
    expect(e.warnings.join()).toContain('COMMON_ERR_LICENSE_CLOCK_BACKWARDS');
    // Within the trial: days left are judged at the high-water mark, not the earlier clock.
    expect(evaluateLicense({ record: rec({ highWaterAt: at(5) }), license: null, now: at(1), usedServers: 1 }).daysLeft).toBe(2);
  });

  it('paid license: warns 30 days ahead, grace after expiry, then expired', () => {
    const lic = payload({ expiresAt: at(100).toISOString(), notBefore: start.toISOString(), graceDays: 10, limits: { maxServers: 2 } }, start.getTime());
    const ok = evaluateLicense({ record: rec(), license: lic, now: at(10), usedServers: 2 });
    expect(ok).toMatchObject({ state: 'licensed', daysLeft: 90, customer: 'ACME K.K.', maxServers: 2, allowsDistribution: true });
    expect(ok.notices).toEqual([]);
    const soon = evaluateLicense({ record: rec(), license: lic, now: at(75), usedServers: 2 });
    expect(soon.notices.map((n) => n.kind)).toEqual(['expires_soon']);
    const grace = evaluateLicense({ record: rec(), license: lic, now: at(105), usedServers: 2 });
    expect(grace).toMatchObject({ state: 'grace', daysLeft: 5, allowsDistribution: true });
    const gone = evaluateLicense({ record: rec(), license: lic, now: at(111), usedServers: 2 });
    expect(gone).toMatchObject({ state: 'expired', allowsDistribution: false });
  });

  it('servers beyond the licensed count are reported', () => {
    const lic = payload({ expiresAt: null, notBefore: start.toISOString(), limits: { maxServers: 2 } }, start.getTime());
    const e = evaluateLicense({ record: rec(), license: lic, now: at(10), usedServers: 3 });
    expect(e).toMatchObject({ state: 'licensed', daysLeft: null, servers: { licensed: 2, used: 3 } });
    expect(e.warnings.join()).toContain('BOOSTER_ERR_LICENSE_SERVER_LIMIT');
  });

  it('a stored license for another cluster is ignored', () => {
    const lic = payload({ clusterId: 'other', notBefore: start.toISOString() }, start.getTime());
    const e = evaluateLicense({ record: rec(), license: lic, now: at(9), usedServers: 1 });
    expect(e.state).toBe('expired');
    expect(e.warnings.join()).toContain('COMMON_ERR_LICENSE_WRONG_CLUSTER');
  });
});
