import { levelFor } from '../../../common/db/availability.js';
import type { Database } from '../../../common/db/create-database.js';
import type { Logger } from '../../../common/log.js';
import { findDispatchableSteps, lostRunsOf, takeStep } from '../../../common/protocol/steps.js';
import type { Runtime } from '../../runtime.js';
import type { StepRunner } from './runner.js';

/**
 * The built-in dispatcher of a server without boosters (BOOSTER_IP empty): it leases due
 * steps to itself at epoch 0 without a leader lease. Several such servers on one database
 * are safe: each lease is a conditional UPDATE that only one of them wins.
 */
export function createLocalDispatcher(deps: {
  db: Database;
  log: Logger;
  nodeId: string;
  runtime: Runtime;
  runner: StepRunner;
  leaseMs: number;
  pollMs: number;
}) {
  const { db, log, nodeId, runtime, runner, leaseMs, pollMs } = deps;
  let stopped = true;
  let wake: (() => void) | null = null;
  let kicked = false;
  let loop: Promise<void> | null = null;

  async function tick(): Promise<void> {
    const free = runtime.stepCapacity - runtime.runningSteps;
    if (free <= 0 || runtime.draining) return;
    const rows = await findDispatchableSteps(db.knex, free);
    for (const row of rows) {
      if (stopped || runtime.runningSteps >= runtime.stepCapacity) break;
      const hold = { stepId: Number(row.id), serverId: nodeId, epoch: 0, leaseMs };
      // Leased and started in one statement: this server is the runner.
      const taken = await takeStep(db.knex, row, { ...hold, started: true });
      if (taken.kind === 'quarantined')
        log.error(
          { stepId: hold.stepId, ticketId: row.ticket_id, stepKey: row.step_key, reason: taken.reason, lostRuns: lostRunsOf(row) },
          'step quarantined: its runs were lost and its policy stops it; an operator decides (admin page)',
        );
      if (taken.kind !== 'leased') continue;
      runner.start({ stepId: hold.stepId, epoch: 0, leaseMs, traceParent: row.trace_parent });
    }
  }

  async function run(): Promise<void> {
    while (!stopped) {
      kicked = false;
      try {
        await tick();
      } catch (err) {
        log[levelFor(err)]({ err }, 'step dispatcher tick failed; retrying');
      }
      if (stopped) break;
      if (kicked) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  }

  return {
    start(): void {
      if (!stopped) return;
      stopped = false;
      loop = run();
    },
    /** Look now (a step was just enqueued or finished). */
    kick(): void {
      kicked = true;
      wake?.();
    },
    async stop(): Promise<void> {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}

export type LocalDispatcher = ReturnType<typeof createLocalDispatcher>;
