import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createBooster } from '../../../booster/booster.js';
import { getHelpers } from '../../../common/db/helpers/index.js';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';
import { enqueueStep } from '../../../common/protocol/steps.js';
import { vendorsUnderTest } from '../../helpers/db.js';
import { waitFor } from '../../helpers/poll.js';
import { boosterConfig, boosterSuiteDatabase, createTicket, silentLog } from '../fixtures.js';

/**
 * Retention on a real booster and database: only the active purges; what the settings let go
 * goes (old events, finished steps, license audit rows, chunks of superseded patches) in
 * statements of at most OMFLOW_BOOSTER_PURGE_BATCH rows; what must stay stays (recent rows,
 * queued and quarantined steps, the patches an agent may still install, every patches row).
 */
const READ = 'retention-read-token-0123456789abc';
const DAY = 86_400_000;
for (const vendor of vendorsUnderTest()) {
  describe(`retention on ${vendor}`, () => {
    const suite = boosterSuiteDatabase(vendor);

    async function seedOldAndNew() {
      const knex = suite.db.knex;
      const h = getHelpers(knex);
      const ago = (days: number) => new Date(Date.now() - days * DAY);
      await knex('booster_events').del();
      for (let i = 0; i < 10; i++)
        await knex('booster_events').insert({ booster_id: 'old', epoch: 1, kind: 'takeover', subject: `old-${i}`, created_at: ago(100) });
      await knex('booster_events').insert({ booster_id: 'new', epoch: 1, kind: 'takeover', subject: 'recent', created_at: ago(1) });

      const ticketId = await createTicket(knex);
      const step = async (state: string, days: number) => {
        const id = await enqueueStep(knex, { ticketId, stepKey: `${state}-${days}`, stepType: 'compute' });
        await knex('steps')
          .where('id', id)
          .update({ state, updated_at: ago(days) });
        return id;
      };
      const oldFinished = [await step('done', 40), await step('done', 40), await step('failed', 40), await step('cancelled', 40), await step('done', 45)];
      const kept = [await step('done', 2), await step('ready', 40), await step('quarantined', 40), await step('assigned', 40)];

      await knex('license_audit').del();
      for (let i = 0; i < 4; i++) await knex('license_audit').insert({ actor: 'a', result_code: 'APPLIED', created_at: ago(500) });
      await knex('license_audit').insert({ actor: 'a', result_code: 'APPLIED', created_at: ago(10) });

      // Four patches of 5 chunks; the oldest has a halted rollout (an operator may resume it), the newest an active one.
      const patches: number[] = [];
      for (let seq = 1; seq <= 4; seq++) {
        const id = await h.insertReturningId(knex, 'patches', {
          version: `1.${seq}.${randomBytes(2).toString('hex')}`,
          sequence: seq,
          manifest_b64: 'e30=',
          signature_b64: 'c2ln',
          key_id: 'k',
          archive_sha256: '0'.repeat(64),
          archive_size: 5,
          chunk_size: 1,
          chunk_count: 5,
          created_at: ago(30 - seq),
        });
        for (let c = 0; c < 5; c++) await knex('patch_chunks').insert({ patch_id: id, chunk_index: c, data: Buffer.from([c]) });
        patches.push(id);
      }
      const rollout = (patchId: number, state: string) =>
        h.insertReturningId(knex, 'rollouts', { patch_id: patchId, version: 'v', state, parallelism: 1, started_at: ago(1), updated_at: ago(1) });
      await rollout(patches[0], 'halted');
      await rollout(patches[3], 'active');
      return { oldFinished, kept, patches };
    }

    it('only the active purges, in batches of at most OMFLOW_BOOSTER_PURGE_BATCH rows; what the settings keep stays', async () => {
      const knex = suite.db.knex;
      const { oldFinished, kept, patches } = await seedOldAndNew();
      // Someone else holds the lease: this booster is the standby, and purges nothing.
      await knex('booster_lease')
        .where('name', 'leader')
        .update({ holder: 'other', epoch: 41, expires_at: new Date(Date.now() + 3_600_000) });
      const deletes: { table: string; rows: number }[] = [];
      const onQuery = (q: { sql: string; bindings?: unknown[] }) => {
        const m = /^delete from [`"[]?(\w+)/i.exec(q.sql);
        if (m) deletes.push({ table: m[1], rows: (q.bindings ?? []).length });
      };
      knex.on('query', onQuery);
      const b = createBooster({
        config: boosterConfig('ret-a', { OMFLOW_BOOSTER_PURGE_INTERVAL_MS: 150, OMFLOW_BOOSTER_PURGE_BATCH: 3, OMFLOW_BOOSTER_OPERATOR_TOKEN: READ }),
        db: suite.db.db,
        log: silentLog,
      });
      await b.listen();
      suite.cleanups.push(async () => {
        knex.removeListener('query', onQuery);
        await b.close();
      });
      await new Promise((r) => setTimeout(r, 1000));
      expect(b.role()).toBe('standby');
      expect(deletes.filter((d) => ['booster_events', 'steps', 'license_audit', 'patch_chunks'].includes(d.table))).toEqual([]);

      // The lease is free: it becomes the active and purges.
      await knex('booster_lease')
        .where('name', 'leader')
        .update({ expires_at: new Date(0) });
      await waitFor(() => b.role() === 'active', { what: 'active', timeoutMs: 10_000 });
      const metrics = async () => (await fetch(`${b.url()}${BOOSTER_PATH.metrics}`, { headers: { authorization: `Bearer ${READ}` } })).text();
      await waitFor(async () => /^omflow_booster_purge_last_success_seconds [1-9]/m.test(await metrics()), {
        what: 'a completed round',
        timeoutMs: 10_000,
        intervalMs: 100,
      });

      expect((await knex('booster_events').select('subject')).map((r) => r.subject)).toEqual(expect.arrayContaining(['recent']));
      expect(await knex('booster_events').where('booster_id', 'old')).toHaveLength(0);
      expect(await knex('steps').whereIn('id', oldFinished)).toHaveLength(0);
      expect((await knex('steps').whereIn('id', kept)).length).toBe(kept.length);
      expect(await knex('license_audit')).toHaveLength(1);
      const chunks = async (id: number) => (await knex('patch_chunks').where('patch_id', id)).length;
      // Newest two kept (OMFLOW_BOOSTER_RETAIN_PATCHES=2), the halted rollout's kept, the one between gone; every row stays.
      expect([await chunks(patches[0]), await chunks(patches[1]), await chunks(patches[2]), await chunks(patches[3])]).toEqual([5, 0, 5, 5]);
      expect(await knex('patches')).toHaveLength(4);

      const text = await metrics();
      expect(text).toMatch(/^omflow_booster_purged_rows_total\{table="booster_events"\} 10$/m);
      expect(text).toMatch(/^omflow_booster_purged_rows_total\{table="steps"\} 5$/m);
      expect(text).toMatch(/^omflow_booster_purged_rows_total\{table="license_audit"\} 4$/m);
      expect(text).toMatch(/^omflow_booster_purged_rows_total\{table="patch_chunks"\} 5$/m);
      // Bounded: no statement deleted more than the batch (chunks: a tenth of it, at least one).
      const purges = deletes.filter((d) => ['booster_events', 'steps', 'license_audit', 'patch_chunks'].includes(d.table));
      expect(purges.length).toBeGreaterThanOrEqual(4 + 2 + 2 + 5);
      for (const d of purges.filter((x) => x.table !== 'patch_chunks')) expect(d.rows).toBeLessThanOrEqual(3);
      for (const d of purges.filter((x) => x.table === 'patch_chunks')) expect(d.rows).toBeLessThanOrEqual(2); // patch id + one chunk index
    });
  });
}
