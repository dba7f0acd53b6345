import type { Knex } from 'knex';
import type { Logger } from '../../common/log.js';
import { audienceOf, signClusterRequest } from '../../common/protocol/cluster-auth.js';
import { SERVER_PATH } from '../../common/protocol/headers.js';
import type { StepDispatch } from '../../common/protocol/messages.js';
import { findDispatchableSteps, leaseStep, releaseStep, STEP_STATE } from '../../common/protocol/steps.js';
import type { UpstreamPools } from '../data-plane/upstream-pools.js';
import type { QueryOutcomeSink } from '../leadership/db-reachability.js';
import type { BoosterMetrics } from '../metrics.js';
import type { ServerTable, ServerView } from '../server-table/server-table.js';

/**
 * Hands ready steps to the least-loaded healthy server: lease in the database (fenced by the
 * leader lease and epoch), then a signed StepDispatch. Polls fast while work is found and
 * sleeps at most pollMs when idle, so a ready step starts within tens of milliseconds.
 */
export interface DispatcherDeps {
  knex: Knex;
  table: ServerTable;
  pools: UpstreamPools;
  metrics: BoosterMetrics;
  log: Logger;
  nodeId: string;
  secret: string;
  opts: { stepLeaseMs: number; dispatchPollMs: number; dispatchBatch: number };
  epoch: () => number;
  /** Active with a confirmed lease and the license allows it; checked before every lease of a step. */
  allowed: () => boolean;
  /** Round outcomes feed the database reachability signal. */
  db?: QueryOutcomeSink | null;
  onReassigned: (stepId: number, previous: string | null, to: string) => void;
  onStaleEpoch: () => void;
}

export class StepDispatcher {
  #running = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  /** A poke arrived while a round was running: go again without sleeping. */
  #poked = false;
  /** Dispatch POSTs in flight (awaited on stop). */
  readonly #pending = new Set<Promise<void>>();

  constructor(private readonly d: DispatcherDeps) {}

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Wake the loop now (a server got capacity, a notification arrived). */
  poke(): void {
    this.#poked = true;
    this.#wake?.();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#loop;
    await Promise.allSettled([...this.#pending]);
  }

  async #run(): Promise<void> {
    let idle = 0;
    while (this.#running) {
      let found = 0;
      this.#poked = false;
      try {
        if (this.d.allowed()) found = await (this.d.db ? this.d.db.track(this.#round()) : this.#round());
      } catch (err) {
        this.d.log.warn({ err }, 'step dispatch round failed');
      }
      if (!this.#running) break;
      if (this.#poked) {
        // Woken during the round (hint or free capacity): look again at once.
        idle = 0;
        continue;
      }
      idle = found > 0 ? 0 : idle + 1;
      // Back off gently: 1 ms after work, up to pollMs when idle.
      const wait = found > 0 ? 1 : Math.min(this.d.opts.dispatchPollMs, 2 * idle);
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          this.#wake = null;
          resolve();
        }, wait);
        this.#wake = () => {
          clearTimeout(t);
          this.#wake = null;
          resolve();
        };
      });
    }
  }

  #choose(): ServerView | null {
    let best: ServerView | null = null;
    let bestFree = 0;
    let bestRatio = -1;
    for (const e of this.d.table.routable) {
      const room = this.d.table.stepRoom(e);
      if (room <= 0) continue;
      const cap = e.heartbeat?.stepCapacity || 1;
      const ratio = room / cap;
      if (ratio > bestRatio || (ratio === bestRatio && room > bestFree)) {
        best = e;
        bestFree = room;
        bestRatio = ratio;
      }
    }
    return best;
  }

  async #round(): Promise<number> {
    if (!this.#choose()) return 0;
    const rows = await findDispatchableSteps(this.d.knex, this.d.opts.dispatchBatch);
    let dispatched = 0;
    for (const row of rows) {
      // The lease may have become unconfirmed while the round waited on the database.
      if (!this.#running || !this.d.allowed()) break;
      const e = this.#choose();
      if (!e) break;
      const epoch = this.d.epoch();
      const won = await leaseStep(this.d.knex, {
        stepId: row.id,
        serverId: e.id,
        epoch,
        leaseMs: this.d.opts.stepLeaseMs,
        leader: { holder: this.d.nodeId },
      });
      if (!won) continue;
      dispatched++;
      this.d.table.stepDispatched(e);
      this.d.metrics.stepsDispatched.inc();
      if (row.state === STEP_STATE.assigned) {
        this.d.metrics.stepsReassigned.inc();
        this.d.onReassigned(row.id, row.assigned_server, e.id);
      }
      const p = this.#send(e, { stepId: row.id, epoch, leaseMs: this.d.opts.stepLeaseMs, attempt: row.attempt + 1 });
      this.#pending.add(p);
      void p.finally(() => this.#pending.delete(p));
    }
    return dispatched;
  }

  async #send(e: ServerView, msg: StepDispatch): Promise<void> {
    const body = JSON.stringify(msg);
    const path = SERVER_PATH.dispatchStep;
    let status = 0;
    let code = '';
    try {
      const r = await this.d.pools.get(e).pool.request({
        method: 'POST',
        path,
        body,
        headers: {
          'content-type': 'application/json',
          ...signClusterRequest(this.d.secret, this.d.nodeId, 'POST', path, body, Date.now(), { audience: audienceOf(e.url) }),
        },
        signal: AbortSignal.timeout(2000),
      });
      status = r.statusCode;
      const text = await r.body.text();
      if (status >= 400) code = (JSON.parse(text || '{}') as { code?: string }).code ?? '';
    } catch (err) {
      this.d.log.warn({ err, server: e.id, stepId: msg.stepId }, 'step dispatch failed; handing the step back');
    }
    if (status >= 200 && status < 300) return;
    this.d.table.stepReturned(e);
    if (code === 'SERVER_ERR_STALE_EPOCH') {
      this.d.log.warn({ server: e.id, epoch: msg.epoch }, 'server has seen a newer epoch; checking the leader lease');
      this.d.onStaleEpoch();
    }
    // Give the step back at once: a server that did not accept it cannot commit it (epoch and holder change on re-lease).
    await releaseStep(this.d.knex, { stepId: msg.stepId, serverId: e.id, epoch: msg.epoch, error: `dispatch refused (${status || 'network'} ${code})` }).catch(
      (err) => this.d.log.warn({ err, stepId: msg.stepId }, 'could not release step; its lease will lapse'),
    );
  }
}
