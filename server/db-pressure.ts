import type { Knex } from 'knex';
import type { HeartbeatDb } from '../common/protocol/messages.js';

/** Queries and acquires remembered per window; beyond it the oldest are dropped (bounded memory). */
const MAX_TRACKED = 4096;

/**
 * What this server sees of its database, for the heartbeat: the median time of the queries that
 * finished since the last report (round trip plus execution, lock waits included) and how long
 * requests wait for a pooled connection (the mean wait of the acquires granted since the last
 * report, or the age of the oldest acquire still waiting, whichever is longer: an exhausted pool
 * grants nothing, so only the waiting ones show it). The booster sheds new work on these
 * (OMFLOW_BOOSTER_DB_PRESSURE_MS). Listens to knex's query events and tarn's acquire events; no
 * query of its own.
 */
export function createDbPressureSampler(knex: Knex, now: () => number = () => performance.now()) {
  const queryStarts = new Map<string, number>();
  const acquireStarts = new Map<number, number>();
  let durations: number[] = [];
  let waitSum = 0;
  let waitCount = 0;

  const onQuery = (q: { __knexQueryUid?: string }) => {
    if (!q.__knexQueryUid) return;
    if (queryStarts.size >= MAX_TRACKED) queryStarts.delete(queryStarts.keys().next().value!);
    queryStarts.set(q.__knexQueryUid, now());
  };
  const onQueryEnd = (_a: unknown, b: unknown) => {
    // query-response is (response, query); query-error is (error, query).
    const uid = (b as { __knexQueryUid?: string } | undefined)?.__knexQueryUid;
    const t0 = uid === undefined ? undefined : queryStarts.get(uid);
    if (t0 === undefined) return;
    queryStarts.delete(uid!);
    if (durations.length < MAX_TRACKED) durations.push(now() - t0);
  };
  knex.on('query', onQuery);
  knex.on('query-response', onQueryEnd);
  knex.on('query-error', onQueryEnd);

  type TarnPool = {
    on(event: string, fn: (...a: unknown[]) => void): void;
    removeListener(event: string, fn: (...a: unknown[]) => void): void;
  };
  const pool = (knex.client as { pool?: TarnPool }).pool;
  const onAcquireRequest = (id: unknown) => {
    if (acquireStarts.size >= MAX_TRACKED) acquireStarts.delete(acquireStarts.keys().next().value!);
    acquireStarts.set(id as number, now());
  };
  const onAcquireDone = (id: unknown) => {
    const t0 = acquireStarts.get(id as number);
    if (t0 === undefined) return;
    acquireStarts.delete(id as number);
    waitSum += now() - t0;
    waitCount++;
  };
  pool?.on('acquireRequest', onAcquireRequest);
  pool?.on('acquireSuccess', onAcquireDone);
  pool?.on('acquireFail', onAcquireDone);

  return {
    /** The figures since the previous call (then the window starts again). */
    sample(): HeartbeatDb {
      const t = now();
      let oldestWaiting = 0;
      // Map order is insertion order: the first entry is the oldest acquire still waiting.
      for (const t0 of acquireStarts.values()) {
        oldestWaiting = t - t0;
        break;
      }
      const sorted = durations.sort((a, b) => a - b);
      const rttMs = sorted.length ? sorted[Math.floor(sorted.length / 2)] : 0;
      const poolWaitMs = Math.max(waitCount ? waitSum / waitCount : 0, oldestWaiting);
      durations = [];
      waitSum = 0;
      waitCount = 0;
      return { rttMs: Math.round(rttMs * 10) / 10, poolWaitMs: Math.round(poolWaitMs) };
    },
    close(): void {
      knex.off('query', onQuery);
      knex.off('query-response', onQueryEnd);
      knex.off('query-error', onQueryEnd);
      pool?.removeListener('acquireRequest', onAcquireRequest);
      pool?.removeListener('acquireSuccess', onAcquireDone);
      pool?.removeListener('acquireFail', onAcquireDone);
    },
  };
}

export type DbPressureSampler = ReturnType<typeof createDbPressureSampler>;
