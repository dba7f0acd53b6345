import type { Logger } from '../common/log.js';
import { SERVER_PATH } from '../common/protocol/headers.js';
import type { ServerTable, ServerView } from './server-table.js';
import type { UpstreamPools } from './upstream-pools.js';

/**
 * Active health checks: quick /healthz on every live server (faster while its state is
 * settling), deep /readyz less often. Results feed the table's rise/fall counters.
 */
export class HealthChecker {
  #timer: NodeJS.Timeout | null = null;
  readonly #due = new Map<string, { health: number; ready: number; busy: boolean }>();

  constructor(
    private readonly table: ServerTable,
    private readonly pools: UpstreamPools,
    private readonly opts: {
      healthIntervalMs: number;
      healthFastIntervalMs: number;
      healthTimeoutMs: number;
      readyIntervalMs: number;
      heartbeatTimeoutMs: number;
    },
    private readonly clock: () => number,
    private readonly log: Logger,
  ) {}

  start(): void {
    const tick = Math.max(5, Math.min(this.opts.healthFastIntervalMs, 100));
    this.#timer = setInterval(() => this.#tick(), tick);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #tick(): void {
    const now = this.clock();
    for (const e of this.table.list) {
      // Only servers that heartbeat are worth checking; the others are down anyway.
      if (e.heartbeatAt === 0 || now - e.heartbeatAt > this.opts.heartbeatTimeoutMs) continue;
      let d = this.#due.get(e.id);
      if (!d) this.#due.set(e.id, (d = { health: 0, ready: 0, busy: false }));
      if (d.busy) continue;
      if (now >= d.health) {
        d.busy = true;
        const checkReady = now >= d.ready;
        void this.#check(e, checkReady).finally(() => {
          d.busy = false;
          const t = this.clock();
          d.health = t + (this.table.changing(e) ? this.opts.healthFastIntervalMs : this.opts.healthIntervalMs);
          if (checkReady) d.ready = t + this.opts.readyIntervalMs;
        });
      }
    }
  }

  async #probe(e: ServerView, path: string): Promise<boolean> {
    try {
      const { pool } = this.pools.get(e);
      const r = await pool.request({ method: 'GET', path, signal: AbortSignal.timeout(this.opts.healthTimeoutMs) });
      await r.body.dump();
      return r.statusCode >= 200 && r.statusCode < 300;
    } catch {
      return false;
    }
  }

  async #check(e: ServerView, ready: boolean): Promise<void> {
    const ok = await this.#probe(e, SERVER_PATH.healthz);
    let r: boolean | undefined;
    if (ok && ready) {
      r = await this.#probe(e, SERVER_PATH.readyz);
      if (r !== e.ready) this.log.info({ server: e.id, ready: r }, 'server readiness changed');
    }
    this.table.recordHealth(e, ok, r);
  }
}
