import { waitFor } from '../helpers/poll.js';
import { longestPause } from '../helpers/vip-cluster.js';
import { type ChaosCluster, startTicketLoad, ticketTitle } from './cluster.js';
import type { Outage } from './postgres-ha.js';

/**
 * One database outage under steady keyed ticket load, measured as a user would: what the clients
 * saw (unavailable time, errors after their one retry), what is in the database afterwards
 * (every acknowledged ticket exactly once with the number the client was told, every automatic
 * step applied exactly once) and whether leadership moved. Shared by test/chaos/*.test.ts and
 * bench/db-chaos.ts, so the benchmark measures exactly what the suite asserts.
 */
export interface CaseResult {
  name: string;
  /** Database down → writable again, ms. */
  outageMs: number;
  /** Longest pause between two acknowledged tickets from 1 s before the outage to the end, ms. */
  unavailableMs: number;
  /** Database writable again → first acknowledged ticket after it, ms. */
  recoveryMs: number;
  /** New `takeover` events, or a change of the booster answering /_booster/active, during the case. */
  takeovers: number;
  activeBefore: string;
  activeAfter: string;
  /** Every booster seen answering /_booster/active with 200 during the case (sampled every 100 ms). */
  activesSeen: string[];
  acked: number;
  /** Tickets that failed after the client's one retry (never acknowledged), and why. */
  errors: number;
  errorKinds: Record<string, number>;
  /** First attempts that failed (saved or not by the retry). */
  firstFailures: number;
  /** Times a booster took a server out of rotation during the case (either booster). */
  serversMarkedDown: number;
  /** Attempts the active booster refused for lack of a ready server (`BOOSTER_ERR_NO_SERVER`), first tries and retries. */
  noServer: number;
  /** Acknowledged, but no row with the key, or a row with another number. */
  lost: number;
  /** Keys with more than one row. */
  duplicated: number;
  /** Tickets (acknowledged or not) whose automatic steps did not run exactly once each. */
  stepsNotOnce: number;
  goal: { holds: boolean; failed: string[] };
}

export interface CaseSpec {
  name: string;
  /** Makes the outage; resolves with when the database went away and came back. */
  inject: () => Promise<Outage>;
  /** Leadership may move (not a stall or restart under 5 s). */
  takeoverAllowed: boolean;
}

/** Automatic steps of the demo flow for the load's tickets (amount 1000): condition, then compute. */
const AUTOMATIC_STEPS = ['triage', 'small'];
const FORM_STEP = 'approve';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runOutageCase(cluster: ChaosCluster, spec: CaseSpec): Promise<CaseResult> {
  const knex = cluster.db.knex;
  const label = `${spec.name}-${Date.now().toString(36)}`;
  const activeBefore = await waitFor(async () => (await cluster.activeBooster()) || false, { what: 'an active booster', timeoutMs: 30_000 });
  const takeoversBefore = Number((await knex('booster_events').where({ kind: 'takeover' }).count({ n: '*' }))[0]!.n);

  const markedDownBefore = cluster.serversMarkedDown();
  const activesSeen = new Set<string>([activeBefore]);
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const a = await cluster.activeBooster();
      if (a) activesSeen.add(a);
      await sleep(100);
    }
  })();

  const load = startTicketLoad({ url: cluster.boosters.find((b) => b.id === activeBefore)!.url, token: cluster.token, label });
  let outage: Outage;
  try {
    await waitFor(async () => load.acks.length >= 20 || false, { what: `tickets flowing before ${spec.name}`, timeoutMs: 60_000 });
    await sleep(1000);
    outage = await spec.inject();
    const back = outage.backAt;
    await waitFor(async () => load.acks.filter((a) => a.startedAt >= back).length >= 20 || false, {
      what: `tickets acknowledged after ${spec.name}`,
      timeoutMs: 60_000,
    });
    await sleep(500);
  } finally {
    await load.stop();
    sampling = false;
    await sampler;
  }

  const acks = load.acks;
  const unavailableMs = longestPause(acks, outage.downAt - 1000, Date.now()) ?? Number.NaN;
  const firstAfter = Math.min(...acks.filter((a) => a.at >= outage.backAt).map((a) => a.at));
  const recoveryMs = firstAfter - outage.backAt;

  // What is in the database, by idempotency key (the title carries it).
  const rows = await waitFor(
    async () => {
      const r = await knex('tickets')
        .where('title', 'like', `${ticketTitle(label)}%`)
        .select('id', 'ticket_no', 'title', 'current_step');
      // Automatic steps run after the acknowledgement: wait until every ticket stands at the form step.
      return r.every((x) => x.current_step === FORM_STEP) ? r : false;
    },
    { what: `every ${spec.name} ticket at its form step (automatic steps done)`, timeoutMs: 60_000 },
  ).catch(async () =>
    knex('tickets')
      .where('title', 'like', `${ticketTitle(label)}%`)
      .select('id', 'ticket_no', 'title', 'current_step'),
  );
  const byKey = new Map<string, { id: number; numbers: string[] }>();
  for (const r of rows) {
    const key = String(r.title).slice(ticketTitle('').length);
    const e = byKey.get(key) ?? { id: Number(r.id), numbers: [] };
    e.numbers.push(String(r.ticket_no));
    byKey.set(key, e);
  }
  const lost = acks.filter((a) => {
    const e = byKey.get(a.key);
    return !e?.numbers.includes(a.number);
  }).length;
  const duplicated = [...byKey.values()].filter((e) => e.numbers.length > 1).length;
  const done: { ticket_id: number | string; n: number | string }[] = (await knex('ticket_history')
    .whereIn(
      'ticket_id',
      rows.map((r) => r.id),
    )
    .whereIn('step', AUTOMATIC_STEPS)
    .where('action', 'step.done')
    .groupBy('ticket_id')
    .select('ticket_id')
    .count({ n: '*' })) as never;
  const doneByTicket = new Map(done.map((d) => [Number(d.ticket_id), Number(d.n)]));
  const stepsNotOnce = rows.filter((r) => doneByTicket.get(Number(r.id)) !== AUTOMATIC_STEPS.length || r.current_step !== FORM_STEP).length;

  const activeAfter = await cluster.activeBooster();
  const takeoverEvents = Number((await knex('booster_events').where({ kind: 'takeover' }).count({ n: '*' }))[0]!.n) - takeoversBefore;
  const moved = activeAfter !== activeBefore || activesSeen.size > 1 ? 1 : 0;
  const errorKinds: Record<string, number> = {};
  for (const e of load.errors) errorKinds[e.why] = (errorKinds[e.why] ?? 0) + 1;
  const outageMs = outage.backAt - outage.downAt;

  const result: Omit<CaseResult, 'goal'> = {
    name: spec.name,
    outageMs,
    unavailableMs,
    recoveryMs,
    takeovers: Math.max(takeoverEvents, moved),
    activeBefore,
    activeAfter,
    activesSeen: [...activesSeen],
    acked: acks.length,
    errors: load.errors.length,
    errorKinds,
    firstFailures: load.firstFailures,
    serversMarkedDown: cluster.serversMarkedDown() - markedDownBefore,
    noServer: (load.firstFailureKinds['HTTP 503 BOOSTER_ERR_NO_SERVER'] ?? 0) + (errorKinds['HTTP 503 BOOSTER_ERR_NO_SERVER'] ?? 0),
    lost,
    duplicated,
    stepsNotOnce,
  };
  return { ...result, goal: judge(result, spec) };
}

/** The issue's goal: unavailable ≤ outage + 1 s; 0 takeovers for stalls/restarts under 5 s; 0 lost; 0 duplicated. */
export function judge(r: Omit<CaseResult, 'goal'>, spec: Pick<CaseSpec, 'takeoverAllowed'>): CaseResult['goal'] {
  const failed: string[] = [];
  if (!(r.unavailableMs <= r.outageMs + 1000)) failed.push(`unavailable ${r.unavailableMs} ms > outage ${r.outageMs} ms + 1 s`);
  if (!spec.takeoverAllowed && r.outageMs < 5000 && r.takeovers > 0) failed.push(`${r.takeovers} takeover(s)`);
  if (r.lost > 0) failed.push(`${r.lost} lost`);
  if (r.duplicated > 0) failed.push(`${r.duplicated} duplicated`);
  if (r.stepsNotOnce > 0) failed.push(`${r.stepsNotOnce} tickets whose automatic steps did not run exactly once`);
  return { holds: failed.length === 0, failed };
}

export function formatResult(r: CaseResult): string {
  const kinds = Object.entries(r.errorKinds)
    .map(([k, n]) => `${k}×${n}`)
    .join(', ');
  return [
    `${r.name.padEnd(22)} outage ${String(r.outageMs).padStart(5)} ms  unavailable ${String(r.unavailableMs).padStart(5)} ms  back→first ack ${String(r.recoveryMs).padStart(5)} ms`,
    `${''.padEnd(22)} takeovers ${r.takeovers} (active ${r.activeBefore} → ${r.activeAfter})  acked ${r.acked}  errors after 1 retry ${r.errors}${kinds ? ` (${kinds})` : ''}  first-try failures ${r.firstFailures} (no server: ${r.noServer}), servers taken out of rotation ${r.serversMarkedDown}`,
    `${''.padEnd(22)} lost ${r.lost}  duplicated ${r.duplicated}  steps not once ${r.stepsNotOnce}  goal ${r.goal.holds ? 'HOLDS' : `MISSED: ${r.goal.failed.join('; ')}`}`,
  ].join('\n');
}
