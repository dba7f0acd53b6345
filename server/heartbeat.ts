import type { Knex } from 'knex';
import type { DatabaseAvailabilityMonitor } from '../common/db/availability.js';
import type { Logger } from '../common/log.js';
import { type ClusterReply, createClusterClient } from '../common/protocol/cluster-client.js';
import type { EpochFence } from '../common/protocol/epoch.js';
import { BOOSTER_PATH } from '../common/protocol/headers.js';
import type { Heartbeat, HeartbeatReply } from '../common/protocol/messages.js';
import type { DbPressureSampler } from './db-pressure.js';
import type { Runtime } from './runtime.js';

/** knex's tarn pool: connections in use and acquirers waiting. */
export function poolStats(knex: Knex): { used: number; waiting: number } {
  const pool = (knex.client as { pool?: { numUsed?: () => number; numPendingAcquires?: () => number } }).pool;
  return { used: pool?.numUsed?.() ?? 0, waiting: pool?.numPendingAcquires?.() ?? 0 };
}

/**
 * Registration and load report: every `intervalMs`, a signed Heartbeat to each booster, the
 * one last seen active first. The reply's epoch feeds the fence. A booster that
 * does not answer is logged once per outage (WARN: it heals by itself).
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
  let inFlight: Promise<void> | null = null;

  function message(): Heartbeat {
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
      eventLoopLagMs: runtime.eventLoopLagMs(true),
      dbPool: poolStats(deps.knex),
      ...(deps.availability && !deps.availability.isUp() ? { dbUnreachableMs: deps.availability.downForMs() } : {}),
      ...(deps.dbPressure ? { db: deps.dbPressure.sample() } : {}),
      cpu: runtime.cpu(),
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

  /** One round: to every booster, the active first; each send is signed anew (own nonce and audience). */
  async function beat(): Promise<void> {
    for (const r of await client.toEveryBooster(boosterUrls, 'POST', BOOSTER_PATH.heartbeat, message())) record(r);
  }

  return {
    beat,
    start(): void {
      if (timer || boosterUrls.length === 0) return;
      const tick = () => {
        if (!inFlight) inFlight = beat().finally(() => (inFlight = null));
      };
      tick();
      timer = setInterval(tick, deps.intervalMs);
    },
    /** Stops the timer; sends one last report (draining) when asked. */
    async stop(finalBeat = false): Promise<void> {
      if (timer) clearInterval(timer);
      timer = null;
      await inFlight;
      if (finalBeat && boosterUrls.length) await beat();
    },
  };
}
