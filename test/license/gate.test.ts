import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLicenseGate } from '../../booster/license/gate.js';
import { applyUpload, createLicenseVerifier, listLicenseAudit, readLicenseState } from '../../common/license/index.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { DAY, issue, tamper, testKeyPair } from './helpers.js';

const log = pino({ level: 'silent' });

for (const vendor of vendorsUnderTest()) {
  describe(`license gate on ${vendor}`, () => {
    let t: TestDatabase;
    const pair = testKeyPair();
    const verifier = createLicenseVerifier({ keys: pair.keys });
    beforeAll(async () => {
      t = await createTestDatabase(vendor, { migrate: true });
    });
    afterAll(async () => {
      await t?.drop();
    });

    it('two boosters record one trial with the database clock and agree after a clock jump, an upload and a clock set back', async () => {
      let offset = 0;
      const now = () => new Date(Date.now() + offset);
      const a = createLicenseGate({ db: t.db, log, nodeId: 'b1', verifier, now, refreshMs: 60_000 });
      const b = createLicenseGate({ db: t.db, log, nodeId: 'b2', verifier, now, refreshMs: 60_000 });
      try {
        const dbNow = await t.db.now();
        await Promise.all([a.start(), b.start()]);
        const state = await readLicenseState(t.db);
        expect(state).not.toBeNull();
        expect(Math.abs(state!.trialStartedAt.getTime() - dbNow.getTime())).toBeLessThan(5000);
        expect(a.status(2)).toMatchObject({ state: 'trial', daysLeft: 7, clusterId: state!.clusterId, servers: { licensed: null, used: 2 } });
        expect(b.status(2).clusterId).toBe(state!.clusterId);

        // A restart (failover) never restarts the trial.
        const c = createLicenseGate({ db: t.db, log, nodeId: 'b1', verifier, now, refreshMs: 60_000 });
        await c.start();
        await c.close();
        expect((await readLicenseState(t.db))!.trialStartedAt.getTime()).toBe(state!.trialStartedAt.getTime());

        offset = 5 * DAY + 60_000;
        await Promise.all([a.refresh(), b.refresh()]);
        expect(a.status(1)).toMatchObject({ state: 'trial', daysLeft: 2 });

        offset = 8 * DAY;
        await Promise.all([a.refresh(), b.refresh()]);
        for (const g of [a, b]) {
          expect(g.allowsDistribution()).toBe(false);
          expect(g.status(1).state).toBe('expired');
          expect(g.status(1).warnings.join()).toContain('BOOSTER_ERR_LICENSE_REQUIRED');
        }

        // Clock set backwards to day 1: the trial is not extended, a warning with its code appears.
        offset = 1 * DAY;
        await Promise.all([a.refresh(), b.refresh()]);
        expect(a.allowsDistribution()).toBe(false);
        expect(a.status(1).warnings.join()).toContain('COMMON_ERR_LICENSE_CLOCK_BACKWARDS');
        expect((await readLicenseState(t.db))!.clockBackAt).not.toBeNull();

        // A tampered upload is refused and audited; the gate stays closed.
        const bad = await applyUpload(t.db, verifier, tamper(issue(pair)), { actor: 'admin' });
        expect(bad.ok).toBe(false);
        expect(!bad.ok && bad.error.code).toBe('COMMON_ERR_LICENSE_BAD_SIGNATURE');
        const wrongCluster = await applyUpload(t.db, verifier, issue(pair, { clusterId: 'not-this-one' }), { actor: 'admin' });
        expect(!wrongCluster.ok && wrongCluster.error.code).toBe('COMMON_ERR_LICENSE_WRONG_CLUSTER');
        await Promise.all([a.refresh(), b.refresh()]);
        expect(a.allowsDistribution()).toBe(false);

        // A valid upload bound to this cluster lifts the gate on both after refresh.
        const good = await applyUpload(t.db, verifier, issue(pair, { clusterId: state!.clusterId, limits: { maxServers: 1 } }), { actor: 'admin' });
        expect(good.ok).toBe(true);
        await Promise.all([a.refresh(), b.refresh()]);
        for (const g of [a, b]) {
          expect(g.allowsDistribution()).toBe(true);
          expect(g.maxServers()).toBe(1);
          const s = g.status(3);
          expect(s).toMatchObject({ state: 'licensed', customer: 'ACME K.K.', servers: { licensed: 1, used: 3 } });
          expect(s.warnings.join()).toContain('BOOSTER_ERR_LICENSE_SERVER_LIMIT');
        }
        const audit = await listLicenseAudit(t.db);
        expect(audit.map((r) => r.resultCode)).toEqual(['APPLIED', 'COMMON_ERR_LICENSE_WRONG_CLUSTER', 'COMMON_ERR_LICENSE_BAD_SIGNATURE']);
        expect(audit[0]).toMatchObject({ actor: 'admin', customer: 'ACME K.K.', licenseId: 'lic-0001' });
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('a license altered in the database is not trusted: the booster verifies it again', async () => {
      const g = createLicenseGate({ db: t.db, log, nodeId: 'b3', verifier, now: () => new Date(Date.now() + 9 * DAY), refreshMs: 60_000 });
      try {
        await g.start();
        expect(g.allowsDistribution()).toBe(true);
        const state = await readLicenseState(t.db);
        await t.knex('license_state').update({ license_text: tamper(state!.licenseText!) });
        await g.refresh();
        expect(g.allowsDistribution()).toBe(false);
        expect(g.status(1).warnings.join()).toContain('COMMON_ERR_LICENSE_BAD_SIGNATURE');
        // A license whose key id this release does not pin is ignored with its code, too.
        const other = testKeyPair('retired-key');
        await t.knex('license_state').update({ license_text: issue(other, { keyId: 'retired-key' }) });
        await g.refresh();
        expect(g.allowsDistribution()).toBe(false);
        expect(g.status(1).warnings.join()).toContain('COMMON_ERR_LICENSE_UNKNOWN_KEY');
      } finally {
        await g.close();
      }
    });
    it('a refresh() called while a periodic read runs still sees the state as of the call', async () => {
      let offset = 0;
      const g = createLicenseGate({ db: t.db, log, nodeId: 'b4', verifier, now: () => new Date(Date.now() + offset), refreshMs: 60_000 });
      try {
        const state = await readLicenseState(t.db);
        expect((await applyUpload(t.db, verifier, issue(pair, { clusterId: state!.clusterId }), { actor: 'admin' })).ok).toBe(true);
        await g.start();
        expect(g.allowsDistribution()).toBe(true);
        const running = g.refresh();
        offset = 400 * DAY;
        await g.refresh();
        await running;
        // The stored license (365 days + 14 days of grace) has run out at the new time.
        expect(g.allowsDistribution()).toBe(false);
      } finally {
        await g.close();
      }
    });
  });
}
