import { beforeEach, describe, expect, it } from 'vitest';
import { createBooster } from '../../../booster/booster.js';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';
import { releaseAllSteps, requeueQuarantinedStep } from '../../../common/protocol/steps.js';
import { vendorsUnderTest } from '../../helpers/db.js';
import { waitFor } from '../../helpers/poll.js';
import { boosterConfig, boosterSuiteDatabase, enqueueSteps, type FixtureServer, silentLog, startFixtureServer } from '../fixtures.js';

/**
 * The re-run policy of steps (ADR 0020) on a real booster, database and loopback servers whose
 * runs are lost (the server starts the step and never finishes, as when it dies mid-run): a
 * step is run again until its maxRuns runs were lost, or never again with onFailover 'abort';
 * then it is quarantined with an event, counted and listed, never dispatched again by itself,
 * and runs exactly once when the operator sends it back. A dispatch that never started is not
 * a lost run.
 */
const READ = 'policy-read-token-0123456789abcdef';
for (const vendor of vendorsUnderTest()) {
  describe(`step re-run policy on ${vendor}`, () => {
    const suite = boosterSuiteDatabase(vendor);
    beforeEach(async () => {
      await suite.db.knex('booster_events').del();
    });

    async function startBooster(stepLeaseMs = 300) {
      const b = createBooster({
        config: boosterConfig('pol-a', { OMFLOW_BOOSTER_STEP_LEASE_MS: stepLeaseMs, OMFLOW_BOOSTER_OPERATOR_TOKEN: READ }),
        db: suite.db.db,
        log: silentLog,
      });
      const base = await b.listen();
      suite.cleanups.push(() => b.close());
      await waitFor(() => b.role() === 'active', { what: 'active' });
      return Object.assign(b, { base });
    }

    async function server(id: string, base: string, mode: FixtureServer['stepMode']) {
      const f = await startFixtureServer({ id, boosters: [base], knex: suite.db.knex, heartbeatMs: 100, stepCapacity: 10 });
      f.stepMode = mode;
      suite.cleanups.push(() => f.stop());
      return f;
    }

    const row = async (id: number) => suite.db.knex('steps').where('id', id).first();
    const dispatchesOf = (fs: FixtureServer[], id: number) => fs.reduce((n, f) => n + f.dispatches.filter((d) => d.stepId === id).length, 0);

    async function quarantinedEvents() {
      return (await suite.db.knex('booster_events').where('kind', 'step-quarantined').orderBy('id')).map((e) => ({
        subject: e.subject,
        details: typeof e.details === 'string' ? JSON.parse(e.details) : e.details,
      }));
    }

    it('runs a step again after each lost run until maxRuns were lost, then quarantines it (event, metric, status); sent back, it runs once', async () => {
      const b = await startBooster();
      const fs = [await server('srv-1', b.base, 'hang'), await server('srv-2', b.base, 'hang')];
      const [id] = await enqueueSteps(suite.db.knex, 1);
      expect(await row(id)).toMatchObject({ on_failover: 'rerun', max_runs: 3 });

      await waitFor(async () => (await row(id)).state === 'quarantined', { what: 'quarantined after 3 lost runs', timeoutMs: 15_000, intervalMs: 50 });
      const q = await row(id);
      expect(q).toMatchObject({ lost_runs: 3, quarantine_reason: 'too-many-lost-runs' });
      expect(dispatchesOf(fs, id)).toBe(3);
      expect(await quarantinedEvents()).toEqual([
        { subject: String(id), details: expect.objectContaining({ reason: 'too-many-lost-runs', lostRuns: 3, stepKey: 's0' }) },
      ]);
      const metrics = await (await fetch(b.base + BOOSTER_PATH.metrics, { headers: { authorization: `Bearer ${READ}` } })).text();
      expect(metrics).toMatch(/^omflow_booster_steps_quarantined_total 1$/m);
      // Status reads the database at most once a second: ask until it shows the step.
      const status = await waitFor(
        async () => {
          const r = await fetch(b.base + BOOSTER_PATH.status, { headers: { authorization: `Bearer ${READ}` } });
          const st = (await r.json()) as { quarantinedSteps: { total: number; steps: { id: number; reason: string; lostRuns: number }[] } };
          return st.quarantinedSteps?.total === 1 ? st : null;
        },
        { what: 'status lists the step', timeoutMs: 5000, intervalMs: 100 },
      );
      expect(status?.quarantinedSteps.steps[0]).toMatchObject({ id, reason: 'too-many-lost-runs', lostRuns: 3 });

      // Not handed out again by itself, however long the dispatcher polls.
      const before = dispatchesOf(fs, id);
      await new Promise((r) => setTimeout(r, 1000));
      expect(dispatchesOf(fs, id)).toBe(before);

      // The operator sends it back: it runs once, with a fresh count.
      for (const f of fs) f.stepMode = 'run';
      expect(await requeueQuarantinedStep(suite.db.knex, id)).toBe(true);
      expect(await requeueQuarantinedStep(suite.db.knex, id)).toBe(false);
      await waitFor(async () => (await row(id)).state === 'done', { what: 'done after the operator sent it back', timeoutMs: 10_000, intervalMs: 50 });
      expect(fs.reduce((n, f) => n + (f.runs.get(id) ?? 0), 0)).toBe(1);
      expect((await row(id)).lost_runs).toBe(0);
    });

    it("onFailover 'abort': the first lost run quarantines the step, and a server's graceful give-back of a started run counts too", async () => {
      // Leases long enough that the give-back below comes before the lapse.
      const b = await startBooster(3000);
      const fs = [await server('srv-1', b.base, 'hang')];
      const [lapsed] = await enqueueSteps(suite.db.knex, 1, { onFailover: 'abort' });
      await waitFor(async () => (await row(lapsed)).state === 'quarantined', { what: 'quarantined at once', timeoutMs: 10_000, intervalMs: 50 });
      expect(await row(lapsed)).toMatchObject({ lost_runs: 1, quarantine_reason: 'aborted-after-failover' });
      expect(dispatchesOf(fs, lapsed)).toBe(1);

      // The server stops gracefully while it runs the step: the run is given back, not finished.
      const stopped = await enqueueSteps(suite.db.knex, 1, { onFailover: 'abort', maxRuns: 5 });
      await waitFor(async () => (await row(stopped[0])).started_at !== null, { what: 'started', timeoutMs: 10_000, intervalMs: 50 });
      expect(await releaseAllSteps(suite.db.knex, 'srv-1')).toBe(1);
      await waitFor(async () => (await row(stopped[0])).state === 'quarantined', {
        what: 'quarantined after the give-back',
        timeoutMs: 10_000,
        intervalMs: 50,
      });
      expect(await row(stopped[0])).toMatchObject({ lost_runs: 1, quarantine_reason: 'aborted-after-failover' });
      expect((await quarantinedEvents()).map((e) => e.details.reason)).toEqual(['aborted-after-failover', 'aborted-after-failover']);
    });

    it('a dispatch that never started is not a lost run: it is handed out again beyond maxRuns, then runs once', async () => {
      const b = await startBooster();
      const f = await server('srv-1', b.base, 'drop');
      const [id] = await enqueueSteps(suite.db.knex, 1, { maxRuns: 1 });
      await waitFor(() => f.dispatches.filter((d) => d.stepId === id).length >= 3, { what: 'dispatched three times', timeoutMs: 15_000, intervalMs: 50 });
      const r = await row(id);
      expect(r.state).not.toBe('quarantined');
      expect(r.lost_runs).toBe(0);
      f.stepMode = 'run';
      await waitFor(async () => (await row(id)).state === 'done', { what: 'done', timeoutMs: 10_000, intervalMs: 50 });
      expect(f.runs.get(id)).toBe(1);
    });
  });
}
