import type { Knex } from 'knex';
import type { Logger } from '../common/log.js';
import { signClusterRequest } from '../common/protocol/cluster-auth.js';
import type { EpochFence } from '../common/protocol/epoch.js';
import { BOOSTER_PATH } from '../common/protocol/headers.js';
import type { Heartbeat, HeartbeatReply } from '../common/protocol/messages.js';
import type { Runtime } from './runtime.js';

/** knex's tarn pool: connections in use and acquirers waiting. */
export function poolStats(knex: Knex): { used: number; waiting: number } {
  const pool = (knex.client as { pool?: { numUsed?: () => number; numPendingAcquires?: () => number } }).pool;
  return { used: pool?.numUsed?.() ?? 0, waiting: pool?.numPendingAcquires?.() ?? 0 };
}

/**
 * Registration and load report: every `intervalMs`, a signed Heartbeat to each booster in
 * order (active first, then the second). The reply's epoch feeds the fence. A booster that
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
  log: Logger;
  intervalMs: number;
  fetchImpl?: typeof fetch;
}) {
  const { boosterUrls, secret, nodeId, runtime, fence, log } = deps;
  const doFetch = deps.fetchImpl ?? fetch;
  const down = new Set<string>();
  let timer: NodeJS.Timeout | null = null;
  let inFlight: Promise<void> | null = null;

  function message(): Heartbeat {
    return {
      nodeId, url: deps.url, version: runtime.version, ...(deps.agentUrl ? { agentUrl: deps.agentUrl } : {}), seq: runtime.nextSeq(), startedAt: runtime.startedAt,
      inflight: Math.max(0, runtime.inflight), runningSteps: runtime.runningSteps, stepCapacity: runtime.stepCapacity, eventLoopLagMs: runtime.eventLoopLagMs(true),
      dbPool: poolStats(deps.knex), cpu: runtime.cpu(), rssBytes: process.memoryUsage.rss(), draining: runtime.draining, epochSeen: fence.highest,
    };
  }

  async function sendOne(base: string, body: string): Promise<void> {
    try {
      const res = await doFetch(base + BOOSTER_PATH.heartbeat, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...signClusterRequest(secret, nodeId, 'POST', BOOSTER_PATH.heartbeat, body) },
        body,
        signal: AbortSignal.timeout(Math.max(500, deps.intervalMs)),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
      const reply = JSON.parse(text) as HeartbeatReply;
      if (Number.isSafeInteger(reply.epoch)) fence.admit(reply.epoch);
      if (down.delete(base)) log.info({ booster: base }, 'booster answers heartbeats again');
    } catch (err) {
      if (!down.has(base)) {
        down.add(base);
        log.warn({ err, booster: base }, 'heartbeat to booster failed');
      }
    }
  }

  /** One round: to every booster, in order. */
  async function beat(): Promise<void> {
    const body = JSON.stringify(message());
    for (const base of boosterUrls) await sendOne(base, body);
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
