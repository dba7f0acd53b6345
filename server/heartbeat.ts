import type { Knex } from 'knex';
import type { DatabaseAvailabilityMonitor } from '../common/db/availability.js';
import type { Logger } from '../common/log.js';
import { type ClusterReply, createClusterClient } from '../common/protocol/cluster-client.js';
import type { EpochFence } from '../common/protocol/epoch.js';
import { BOOSTER_PATH } from '../common/protocol/headers.js';
import type { Heartbeat, HeartbeatReply } from '../common/protocol/messages.js';
import type { DbPressureSampler } from './db-pressure.js';
import type { Runtime } from './runtime.js';

/** How soon after a step finishes its freed room is reported (coalesces a burst of finishes into one beat). */
const EARLY_BEAT_MS = 50;

/** knex's tarn pool: connections in use and acquirers waiting. */
export function poolStats(knex: Knex): { used: number; waiting: number } {
  const pool = (knex.client as { pool?: { numUsed?: () => number; numPendingAcquires?: () => number } }).pool;
  return { used: pool?.numUsed?.() ?? 0, waiting: pool?.numPendingAcquires?.() ?? 0 };
}

/**
 * Registration and load report: every `intervalMs`, a signed Heartbeat to each booster, the
 * one last seen active first. The reply's epoch feeds the fence. A booster that
 * does not answer is logged once per outage (WARN: it heals by itself). Each booster has its own
 * send in flight: one whose host vanished (no reset, every call waits for its timeout) never
 * delays the others' heartbeats, or the booster that took over would see its servers' heartbeats
 * stop and take them out of rotation (the production lab's power-off of the active found it).
 */
export function createHeartbeat(deps: {
  boosterUrls: string[];
  secret: string;
  nodeId: string;
  url: string;
  agentUrl?: string;
  runtime: Runtime;
  fence: EpochFence;
  knex: Knex;
  /** Heartbeats need no database: they go on during an outage and say how long it has lasted. */
  availability?: DatabaseAvailabilityMonitor;
  log: Logger;
  intervalMs: number;
  /** Database round-trip time and pool wait since the last report (omitted: not reported). */
  dbPressure?: DbPressureSampler;
}) {
  const { boosterUrls, secret, nodeId, runtime, fence, log } = deps;
  const client = createClusterClient({ secret, nodeId, timeoutMs: Math.max(500, deps.intervalMs) });
  const down = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  /** The send to each booster that has not finished yet; a booster with one is skipped. */
  const inFlight = new Map<string, Promise<void>>();
  let early: NodeJS.Timeout | null = null;
  /** The windowed samples of the last full beat: an early beat repeats them rather than cut a window short. */
  let samples: Pick<Heartbeat, 'eventLoopLagMs' | 'cpu' | 'db'> | null = null;

  function sampled(fresh: boolean): Pick<Heartbeat, 'eventLoopLagMs' | 'cpu' | 'db'> {
    if (fresh || !samples)
      samples = {
        eventLoopLagMs: runtime.eventLoopLagMs(true),
        cpu: runtime.cpu(),
        ...(deps.dbPressure ? { db: deps.dbPressure.sample() } : {}),
      };
    return samples;
  }

  function message(fresh = true): Heartbeat {
    const { eventLoopLagMs, cpu, db } = sampled(fresh);
    return {
      nodeId,
      url: deps.url,
      version: runtime.version,
      ...(deps.agentUrl ? { agentUrl: deps.agentUrl } : {}),
      seq: runtime.nextSeq(),
      startedAt: runtime.startedAt,
      inflight: Math.max(0, runtime.inflight),
      runningSteps: runtime.runningSteps,
      stepCapacity: runtime.stepCapacity,
      eventLoopLagMs,
      dbPool: poolStats(deps.knex),
      ...(deps.availability && !deps.availability.isUp() ? { dbUnreachableMs: deps.availability.downForMs() } : {}),
      ...(db ? { db } : {}),
      cpu,
      rssBytes: process.memoryUsage.rss(),
      draining: runtime.draining,
      epochSeen: fence.highest,
    };
  }

  function record(r: ClusterReply): void {
    if (r.ok && r.body && typeof r.body === 'object') {
      const reply = r.body as HeartbeatReply;
      if (Number.isSafeInteger(reply.epoch)) fence.admit(reply.epoch);
      if (down.delete(r.url)) log.info({ booster: r.url }, 'booster answers heartbeats again');
    } else if (!down.has(r.url)) {
      down.add(r.url);
      // Another live server holds this node id: nothing heals that by itself, a person must act.
      if ((r.body as { code?: unknown } | null)?.code === 'BOOSTER_ERR_DUPLICATE_NODE_ID')
        return void log.error(
          { booster: r.url, nodeId, details: (r.body as { details?: unknown }).details },
          'a booster refuses this server: another live server uses the same node id',
        );
      log.warn(
        { booster: r.url, status: r.status, error: r.error ?? (typeof r.body === 'string' ? r.body.slice(0, 200) : r.body) },
        'heartbeat to booster failed',
      );
    }
  }

  function send(url: string, msg: Heartbeat): Promise<void> {
    const pending = inFlight.get(url);
    if (pending !== undefined) return pending;
    const p = client
      .call(url, 'POST', BOOSTER_PATH.heartbeat, msg)
      .then(record)
      .finally(() => inFlight.delete(url));
    inFlight.set(url, p);
    return p;
  }

  /**
   * One round: to every booster, the active first (the others once it answered, or after a head
   * start of a fifth of the interval); each send is signed anew (own nonce and audience).
   */
  async function beat(fresh = true): Promise<void> {
    const msg = message(fresh);
    const known = client.knownActive;
    const first = boosterUrls.includes(known ?? '') ? (known as string) : boosterUrls[0]!;
    const firstSent = send(first, msg);
    let headStart: NodeJS.Timeout | undefined;
    await Promise.race([firstSent, new Promise<void>((r) => (headStart = setTimeout(r, Math.max(20, deps.intervalMs / 5))))]);
    clearTimeout(headStart);
    await Promise.all([firstSent, ...boosterUrls.filter((u) => u !== first).map((u) => send(u, msg))]);
  }

  return {
    beat,
    /**
     * Step room freed (a step finished): the boosters hear of it within EARLY_BEAT_MS instead of at
     * the next beat. Each dispatches to a server at most the room its last heartbeat showed, so with
     * only the regular beat a server ran at most its capacity of steps per interval.
     */
    soon(): void {
      if (!timer || early) return;
      early = setTimeout(() => {
        early = null;
        void beat(false);
      }, EARLY_BEAT_MS);
    },
    start(): void {
      if (timer || boosterUrls.length === 0) return;
      const tick = () => void beat();
      tick();
      timer = setInterval(tick, deps.intervalMs);
    },
    /** Stops the timer; sends one last report (draining) when asked. */
    async stop(finalBeat = false): Promise<void> {
      if (timer) clearInterval(timer);
      timer = null;
      if (early) clearTimeout(early);
      early = null;
      await Promise.all(inFlight.values());
      if (finalBeat && boosterUrls.length) await beat();
    },
  };
}
