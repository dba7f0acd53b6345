import type { Logger } from '../common/log.js';
import { SERVER_PATH } from '../common/protocol/headers.js';
import type { Proxy } from './proxy.js';
import type { ServerEntry, ServerTable } from './server-table.js';

/**
 * Active health checks: quick /healthz on every live server (faster while its state is
 * settling), deep /readyz less often. Results feed the table's rise/fall counters.
 */
export class HealthChecker {
  #timer: NodeJS.Timeout | null = null;
  readonly #due = new Map<string, { health: number; ready: number; busy: boolean }>();

  constructor(
    private readonly table: ServerTable,
    private readonly proxy: Proxy,
    private readonly opts: { healthIntervalMs: number; healthFastIntervalMs: number; healthTimeoutMs: number; readyIntervalMs: number; heartbeatTimeoutMs: number },
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

  async #probe(e: ServerEntry, path: string): Promise<boolean> {
    try {
      const { pool } = this.proxy.poolFor(e);
      const r = await pool.request({ method: 'GET', path, signal: AbortSignal.timeout(this.opts.healthTimeoutMs) });
      await r.body.dump();
      return r.statusCode >= 200 && r.statusCode < 300;
    } catch {
      return false;
    }
  }

  async #check(e: ServerEntry, ready: boolean): Promise<void> {
    const ok = await this.#probe(e, SERVER_PATH.healthz);
    if (ok && ready) {
      const r = await this.#probe(e, SERVER_PATH.readyz);
      if (r !== e.ready) this.log.info({ server: e.id, ready: r }, 'server readiness changed');
      e.ready = r;
    }
    this.table.recordHealth(e, ok);
  }
}
