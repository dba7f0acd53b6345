import { levelFor } from '../../../common/db/availability.js';
import type { Database } from '../../../common/db/create-database.js';
import { getHelpers } from '../../../common/db/helpers/index.js';
import type { Logger } from '../../../common/log.js';
import { completeStep, recordChainedStep, renewStepLease, type StepType } from '../../../common/protocol/steps.js';
import { traceIdOf } from '../../../common/protocol/trace-context.js';
import type { Runtime } from '../../runtime.js';
import { evaluate, type FlowDefinition, type HttpStep, type StepDef } from '../flows/definition.js';
import { enqueuePlaced, type Placement, placeOn, TICKET_STATE } from '../flows/engine.js';
import type { FlowsStore } from '../flows/store.js';
import { enterEntry, type HistoryEntry, type TicketsStore } from '../tickets/store.js';

export interface Hold {
  stepId: number;
  epoch: number;
  leaseMs: number;
  /** The W3C traceparent the step was queued with (the dispatch carries it): in its log lines and passed to the step it queues. */
  traceParent?: string | null;
}

interface Effect {
  outcome: 'done' | 'failed';
  /** Fields to merge into the ticket. */
  set?: Record<string, unknown>;
  /** Next step; null: the ticket fails. */
  next: string | null;
  result: unknown;
  error?: string;
}

class LeaseLost extends Error {}

/** Pure steps run at once after a step, in its transaction; beyond this the next one is queued (a loop of pure steps cannot hold a transaction forever). */
export const MAX_CHAINED_STEPS = 16;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });

/**
 * Runs automatic steps this server holds a lease on. The result is committed in ONE
 * transaction with its effects on the ticket, and only while the lease (server + epoch) still
 * holds (completeStep); otherwise everything rolls back and whoever holds the step now wins.
 */
export function createStepRunner(deps: {
  db: Database;
  log: Logger;
  nodeId: string;
  runtime: Runtime;
  flows: FlowsStore;
  tickets: TicketsStore;
  /** Called after a commit that may have enqueued a step (wakes the built-in dispatcher). */
  onCommitted?: () => void;
  /** A run ended (done, failed or abandoned): its room is free. */
  onFinished?: () => void;
  fetchImpl?: typeof fetch;
}) {
  const { db, log, nodeId, runtime, flows, tickets } = deps;
  const doFetch = deps.fetchImpl ?? fetch;
  const running = new Map<number, { controller: AbortController; done: Promise<void> }>();

  async function callHttp(stepId: number, s: HttpStep, data: Record<string, unknown>, signal: AbortSignal): Promise<Effect> {
    const method = s.method ?? 'POST';
    const body = method === 'GET' || method === 'DELETE' ? undefined : JSON.stringify(s.body ? await evaluate(s.body, data) : data);
    const attempts = (s.retries ?? 3) + 1;
    let lastError = '';
    let made = 0;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      made = attempt;
      try {
        const res = await doFetch(s.url, {
          method,
          // The same key on every attempt and every server: the receiver can drop duplicates.
          headers: { 'content-type': 'application/json', 'idempotency-key': `step-${stepId}`, ...(s.headers ?? {}) },
          body,
          signal: AbortSignal.any([signal, AbortSignal.timeout(s.timeoutMs ?? 10_000)]),
        });
        const text = (await res.text()).slice(0, 65_536);
        if (res.ok) {
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : null;
          } catch {
            // not JSON: keep the text
          }
          const result = { status: res.status, body: parsed, attempts: attempt };
          return { outcome: 'done', set: s.resultField ? { [s.resultField]: { status: res.status, body: parsed } } : undefined, next: s.next, result };
        }
        lastError = `HTTP ${res.status}`;
        // A client error other than timeout/throttling will not succeed on retry; repeating it
        // only risks a receiver that ignores the idempotency key applying it again.
        if (res.status < 500 && res.status !== 408 && res.status !== 429) break;
      } catch (err) {
        if (signal.aborted) throw err;
        lastError = (err as Error).message;
      }
      if (attempt < attempts) await sleep((s.backoffMs ?? 200) * 2 ** (attempt - 1), signal);
    }
    return { outcome: 'failed', next: s.onError ?? null, result: { attempts: made, error: lastError }, error: lastError };
  }

  async function execute(stepId: number, step: StepDef, data: Record<string, unknown>, signal: AbortSignal): Promise<Effect> {
    switch (step.type) {
      case 'condition': {
        for (let i = 0; i < step.branches.length; i++) {
          if (await evaluate(step.branches[i].when, data))
            return { outcome: 'done', next: step.branches[i].next, result: { branch: i, next: step.branches[i].next } };
        }
        return { outcome: 'done', next: step.default, result: { branch: 'default', next: step.default } };
      }
      case 'compute': {
        const scope = { ...data };
        const set: Record<string, unknown> = {};
        for (const [field, expr] of Object.entries(step.set)) {
          const v = await evaluate(expr, scope);
          scope[field] = v === undefined ? null : v;
          set[field] = scope[field];
        }
        return { outcome: 'done', set, next: step.next, result: { set } };
      }
      case 'http':
        return callHttp(stepId, step, data, signal);
      case 'timer':
        return { outcome: 'done', next: step.next, result: { waited: true } };
      default:
        return { outcome: 'failed', next: null, result: null, error: `step type ${step.type} is not automatic` };
    }
  }

  async function runOnce(hold: Hold, controller: AbortController): Promise<void> {
    const h = { stepId: hold.stepId, serverId: nodeId, epoch: hold.epoch };
    const renewEvery = Math.max(250, Math.floor(hold.leaseMs / 3));
    const renewer = setInterval(() => {
      renewStepLease(db.knex, { ...h, leaseMs: hold.leaseMs })
        .then((ok) => {
          if (!ok) controller.abort(new LeaseLost('lease lost'));
        })
        .catch((err) => log[levelFor(err)]({ err, stepId: hold.stepId }, 'step lease renewal failed'));
    }, renewEvery);
    try {
      // The step and its ticket in one read; the ticket is not locked while the step runs.
      const row = await db
        .knex('steps as s')
        .leftJoin('tickets as t', 't.id', 's.ticket_id')
        .where('s.id', hold.stepId)
        .first('t.*', 's.step_key as s_step_key', 's.ticket_id as s_ticket_id');
      if (!row) return;
      const stepKey = row.s_step_key as string;
      const ticket = row.id == null ? null : tickets.toTicket(row);
      const version = ticket?.flowVersionId ? await flows.version(ticket.flowVersionId) : null;
      const def: FlowDefinition | undefined = version?.definition;
      const stepDef = def?.steps[stepKey];
      let effect: Effect;
      if (!ticket || !def || !stepDef) effect = { outcome: 'failed', next: null, result: null, error: 'ticket or flow step is gone' };
      else {
        try {
          effect = await execute(hold.stepId, stepDef, ticket.data, controller.signal);
        } catch (err) {
          if (controller.signal.aborted) throw err;
          // JSONata errors are plain objects {code, message?}.
          const e = err as { code?: string; message?: string };
          effect = { outcome: 'failed', next: null, result: null, error: [e?.code, e?.message].filter(Boolean).join(' ') || String(err) };
        }
      }
      // Pure steps that follow (condition, compute: no I/O, no clock) run at once, before the
      // transaction, and are committed with this step under its lease instead of a queue round
      // each (bounded: a loop of pure steps goes back through the queue every MAX_CHAINED_STEPS).
      const chain: { stepKey: string; stepType: StepType; effect: Effect }[] = [];
      let data = { ...(ticket?.data ?? {}), ...(effect.set ?? {}) };
      let next = effect.next;
      while (ticket && def && next && chain.length < MAX_CHAINED_STEPS) {
        const nextDef = def.steps[next];
        if (!nextDef || (nextDef.type !== 'condition' && nextDef.type !== 'compute')) break;
        let e: Effect;
        try {
          e = await execute(hold.stepId, nextDef, data, controller.signal);
        } catch (err) {
          if (controller.signal.aborted) throw err;
          const x = err as { code?: string; message?: string };
          e = { outcome: 'failed', next: null, result: null, error: [x?.code, x?.message].filter(Boolean).join(' ') || String(err) };
        }
        chain.push({ stepKey: next, stepType: nextDef.type, effect: e });
        data = { ...data, ...(e.set ?? {}) };
        next = e.next;
      }
      await db.transaction(async (trx) => {
        const hh = getHelpers(trx);
        // Ticket row first, then the step row: the same lock order as user actions (cancel), so no
        // deadlock. The ticket changes only if nobody changed it since it was read (row_version):
        // cancelled or moved on meanwhile, the step is finished and the ticket is left alone.
        let placed: Placement | null = null;
        let applied = false;
        if (ticket && def && ticket.state === TICKET_STATE.running && ticket.currentStep === stepKey) {
          let columns: Record<string, unknown>;
          if (next) {
            placed = await placeOn({ trx, def, data, createdBy: ticket.createdBy, traceParent: hold.traceParent }, next);
            columns = placed.columns;
          } else columns = { state: TICKET_STATE.failed, closed_at: hh.now(), ...(chain.length ? { current_step: chain.at(-1)!.stepKey } : {}) };
          applied = await tickets.move(trx, ticket.id, { columns, data, ifVersion: ticket.rowVersion });
        }
        if (!(await completeStep(trx, { ...h, outcome: effect.outcome, result: effect.result, error: effect.error })))
          throw new LeaseLost('lease lost before commit');
        if (!applied || !ticket) return;
        const actor = { ticketId: ticket.id, actorId: null, nodeId };
        const history: HistoryEntry[] = [
          {
            ...actor,
            step: stepKey,
            action: effect.outcome === 'done' ? 'step.done' : 'step.failed',
            output: { result: effect.result, error: effect.error, set: effect.set, stepId: hold.stepId, epoch: hold.epoch },
          },
        ];
        for (const c of chain) {
          const id = await recordChainedStep(trx, {
            ticketId: ticket.id,
            stepKey: c.stepKey,
            stepType: c.stepType,
            serverId: nodeId,
            epoch: hold.epoch,
            outcome: c.effect.outcome,
            result: c.effect.result,
            error: c.effect.error,
            traceParent: hold.traceParent,
          });
          history.push(
            { ...actor, step: c.stepKey, action: 'enter', output: { state: TICKET_STATE.running, stepId: id } },
            {
              ...actor,
              step: c.stepKey,
              action: c.effect.outcome === 'done' ? 'step.done' : 'step.failed',
              output: { result: c.effect.result, error: c.effect.error, set: c.effect.set, stepId: id, epoch: hold.epoch, chainedTo: hold.stepId },
            },
          );
        }
        const stepId = placed ? await enqueuePlaced(trx, ticket.id, placed) : undefined;
        if (placed) history.push(enterEntry(actor, placed, stepId));
        await tickets.addHistory(trx, history);
      });
      deps.onCommitted?.();
    } finally {
      clearInterval(renewer);
    }
  }

  return {
    get size() {
      return running.size;
    },
    /** Starts a held step in the background (the lease is already marked started). */
    start(hold: Hold): void {
      if (running.has(hold.stepId)) return;
      const controller = new AbortController();
      runtime.runningSteps++;
      const traceId = traceIdOf(hold.traceParent ?? undefined);
      const done = runOnce(hold, controller)
        .catch((err) => {
          if (err instanceof LeaseLost || controller.signal.aborted)
            log.warn({ stepId: hold.stepId, traceId, reason: String((err as Error)?.message ?? err) }, 'step abandoned: lease lost or stopping');
          else log.warn({ err, stepId: hold.stepId, traceId }, 'step run failed; the lease will lapse and it runs again');
        })
        .finally(() => {
          running.delete(hold.stepId);
          runtime.runningSteps--;
          deps.onFinished?.();
        });
      running.set(hold.stepId, { controller, done });
    },
    /** Waits for running steps up to `ms`, then aborts the rest (their leases are released by the caller). */
    async drain(ms: number): Promise<void> {
      const all = Promise.all([...running.values()].map((r) => r.done));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([all, new Promise((r) => (timer = setTimeout(r, ms)))]);
      clearTimeout(timer);
      for (const r of running.values()) r.controller.abort(new LeaseLost('stopping'));
      await Promise.race([Promise.all([...running.values()].map((r) => r.done)), new Promise((r) => setTimeout(r, 2000))]);
    },
  };
}

export type StepRunner = ReturnType<typeof createStepRunner>;
