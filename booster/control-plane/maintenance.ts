import type { Logger } from '../../common/log.js';
import type { MaintenanceCommand } from '../../common/protocol/messages.js';
import type { MaintenanceView } from '../data-plane/maintenance-page.js';
import type { ClusterEvents } from './cluster-events.js';
import type { ClusterStore } from './cluster-store.js';

/**
 * Cluster-wide maintenance mode (JobCenter's maintenance=ON, Patroni's pause for users): the
 * data plane answers a maintenance page while everything else runs (health checks, leadership,
 * step dispatch, rollouts). The switch is a booster_state row, so both boosters honour it and a
 * takeover keeps it: the booster that takes the command applies it at once, the other at its
 * next refresh (every second).
 */
export interface MaintenanceStatus {
  on: boolean;
  message: string | null;
  retryAfterS: number;
  /** When and by whom it was last switched (null: never). */
  since: string | null;
  by: string | null;
}

/** Retry-After of the maintenance answers unless the command sets one. */
export const MAINTENANCE_RETRY_AFTER_S = 120;
const NAME = 'maintenance';

interface Stored {
  on: boolean;
  message: string | null;
  retryAfterS: number;
}

export class MaintenanceMode {
  #status: MaintenanceStatus = { on: false, message: null, retryAfterS: MAINTENANCE_RETRY_AFTER_S, since: null, by: null };
  #view: MaintenanceView | null = null;
  #refreshing: Promise<void> | null = null;

  constructor(private readonly d: { store: ClusterStore; events: Pick<ClusterEvents, 'record'>; log: Logger; onChange: () => void }) {}

  /** What the data plane answers with, or null when it proxies. */
  view(): MaintenanceView | null {
    return this.#view;
  }

  status(): MaintenanceStatus {
    return this.#status;
  }

  /** Reads the switch (one at a time: a stalled database must not pile up queries). */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#load().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  async #load(): Promise<void> {
    const row = await this.d.store.readState<Stored>(NAME);
    if (!row?.value) return;
    this.#apply({ ...row.value, since: row.at, by: row.by });
  }

  async set(cmd: MaintenanceCommand, by: string): Promise<MaintenanceStatus> {
    // A refresh that read the row before this write must not undo it here.
    await this.#refreshing?.catch(() => {});
    const stored: Stored = {
      on: cmd.on,
      message: cmd.on ? cmd.message?.trim() || null : null,
      retryAfterS: cmd.retryAfterS ?? MAINTENANCE_RETRY_AFTER_S,
    };
    await this.d.store.writeState(NAME, stored, by);
    this.#apply({ ...stored, since: new Date().toISOString(), by });
    this.d.log.warn({ by, message: stored.message }, cmd.on ? 'maintenance mode on: users get the maintenance page' : 'maintenance mode off');
    await this.d.events.record(cmd.on ? 'maintenance-on' : 'maintenance-off', null, { by, message: stored.message, retryAfterS: stored.retryAfterS });
    return this.#status;
  }

  #apply(s: MaintenanceStatus): void {
    const changed = s.on !== this.#status.on || s.message !== this.#status.message || s.retryAfterS !== this.#status.retryAfterS;
    this.#status = s;
    this.#view = s.on ? { message: s.message, retryAfterS: s.retryAfterS } : null;
    if (changed) this.d.onChange();
  }
}
