import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  acquireLock,
  applyPatch,
  buildPatch,
  getLatestRollout,
  haltRollout,
  listPatches,
  loadPatchBytes,
  MAX_CHUNK_BYTES,
  releaseLock,
  renewLock,
  resumeRollout,
  rollbackRollout,
  rolloutStatus,
  setNodeState,
  verifyPatch,
} from '../../common/patch/index.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { fixtureEntries, makeKey, trustOnly } from './helpers.js';

const key = makeKey();
const stranger = makeKey();
const trusted = trustOnly(key);

const codeOf = async (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (err) => (err as { code?: string }).code,
  );

for (const vendor of vendorsUnderTest()) {
  describe(`patch storage and rollout state (${vendor})`, () => {
    let tdb: TestDatabase;
    beforeAll(async () => {
      tdb = await createTestDatabase(vendor, { migrate: true });
    });
    afterAll(async () => {
      await tdb.drop();
    });

    it('stores a patch in chunks of at most 256 KiB and reads back the exact bytes', async () => {
      // Incompressible content so the patch spans several chunks.
      const bytes = buildPatch({
        version: '1.0.0',
        sequence: 1,
        privateKey: key.privateKey,
        entries: fixtureEntries({ extra: [{ path: 'server/blob.bin', data: randomBytes(700_000) }] }),
      }).bytes;
      const stored = await applyPatch(tdb.db, bytes, trusted);
      const chunks = await tdb.knex('patch_chunks').where({ patch_id: stored.patchId });
      expect(chunks.length).toBeGreaterThanOrEqual(3);
      const back = await loadPatchBytes(tdb.db, stored.patchId);
      expect(back.equals(bytes)).toBe(true);
      expect(Math.max(...chunks.map((c: { data: Buffer }) => Buffer.from(c.data).length))).toBeLessThanOrEqual(MAX_CHUNK_BYTES);
      expect(verifyPatch(back, trusted).manifest.version).toBe('1.0.0');
      const r = await getLatestRollout(tdb.db);
      expect(r).toMatchObject({ id: stored.rolloutId, version: '1.0.0', sequence: 1, state: 'active' });
    });

    it('refuses replays, duplicate versions and untrusted keys without storing anything', async () => {
      const before = (await listPatches(tdb.db)).length;
      expect(
        await codeOf(applyPatch(tdb.db, buildPatch({ version: '0.9.0', sequence: 1, privateKey: key.privateKey, entries: fixtureEntries() }).bytes, trusted)),
      ).toBe('AGENT_ERR_PATCH_SEQUENCE_REPLAY');
      expect(
        await codeOf(applyPatch(tdb.db, buildPatch({ version: '1.0.0', sequence: 5, privateKey: key.privateKey, entries: fixtureEntries() }).bytes, trusted)),
      ).toBe('AGENT_ERR_PATCH_VERSION_EXISTS');
      expect(
        await codeOf(
          applyPatch(tdb.db, buildPatch({ version: '2.0.0', sequence: 6, privateKey: stranger.privateKey, entries: fixtureEntries() }).bytes, trusted),
        ),
      ).toBe('AGENT_ERR_PATCH_UNTRUSTED_KEY');
      expect((await listPatches(tdb.db)).length).toBe(before);
    });

    it('operator actions move the rollout through its states; wrong transitions are refused', async () => {
      const second = await applyPatch(
        tdb.db,
        buildPatch({ version: '1.1.0', sequence: 2, privateKey: key.privateKey, entries: fixtureEntries() }).bytes,
        trusted,
      );
      await setNodeState(tdb.db, second.rolloutId, 'node-a', 'failed', { toVersion: '1.1.0', fromVersion: '1.0.0', error: 'boom' });
      expect((await haltRollout(tdb.db, undefined, 'looks wrong')).state).toBe('halted');
      expect(await codeOf(rollbackRollout(tdb.db, 999_999))).toBe('AGENT_ERR_PATCH_NOT_FOUND');
      const resumed = await resumeRollout(tdb.db);
      expect(resumed.state).toBe('active');
      expect(resumed.nodes).toMatchObject([{ serverId: 'node-a', state: 'pending' }]);
      expect((await rollbackRollout(tdb.db)).state).toBe('rolling_back');
      expect(await codeOf(resumeRollout(tdb.db))).toBe('AGENT_ERR_ROLLOUT_STATE');
      const view = await rolloutStatus(tdb.db);
      expect(view.nodes.map((n) => n.serverId)).toContain('node-a');
    });

    it('the rollout lock admits one holder and fences with a growing token', async () => {
      const a = await acquireLock(tdb.db, 'test-lock', 'a', 60_000);
      expect(a).not.toBeNull();
      expect(await acquireLock(tdb.db, 'test-lock', 'b', 60_000)).toBeNull();
      expect(await renewLock(tdb.db, 'test-lock', 'a', a!, 60_000)).toBe(true);
      await releaseLock(tdb.db, 'test-lock', 'a', a!);
      const b = await acquireLock(tdb.db, 'test-lock', 'b', 1);
      expect(b).toBeGreaterThan(a!);
      await new Promise((r) => setTimeout(r, 50));
      // b's lease lapsed by the database clock: c takes over, b can no longer renew.
      const c = await acquireLock(tdb.db, 'test-lock', 'c', 60_000);
      expect(c).toBeGreaterThan(b!);
      expect(await renewLock(tdb.db, 'test-lock', 'b', b!, 60_000)).toBe(false);
    });
  });
}
