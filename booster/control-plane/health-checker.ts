import type { Logger } from '../../common/log.js';
import { SERVER_PATH } from '../../common/protocol/headers.js';
import type { UpstreamPools } from '../data-plane/upstream-pools.js';
import type { ServerTable, ServerView } from '../server-table/server-table.js';

/**
 * Active health checks: quick /healthz on every live server (faster while its state is
 * settling), deep /readyz less often, but at the fast interval again while readiness is failing
 * or not back yet (so a server out for readiness returns within a few fast checks, not at the
 * next deep one). Results feed the table's rise/fall counters.
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
        void this.#check(e, checkReady)
          .catch(() => false)
          .then((readyAsked) => {
            d.busy = false;
            const t = this.clock();
            const settling = this.table.changing(e) || this.table.readinessSettling(e);
            d.health = t + (settling ? this.opts.healthFastIntervalMs : this.opts.healthIntervalMs);
            if (readyAsked) d.ready = t + (this.table.readinessSettling(e) ? this.opts.healthFastIntervalMs : this.opts.readyIntervalMs);
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

  /** One /healthz, then /readyz when due and the server is alive; true when /readyz was asked. */
  async #check(e: ServerView, ready: boolean): Promise<boolean> {
    const ok = await this.#probe(e, SERVER_PATH.healthz);
    const r = ok && ready ? await this.#probe(e, SERVER_PATH.readyz) : undefined;
    const was = e.ready;
    this.table.recordHealth(e, ok, r);
    if (e.ready !== was) this.log.info({ server: e.id, ready: e.ready }, 'server readiness changed');
    return r !== undefined;
  }
}
