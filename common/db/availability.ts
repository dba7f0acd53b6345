import { CommonErrors } from '../errors.js';
import type { Logger } from '../log.js';

/**
 * "Is the database reachable?" for one process. Servers and agents derive it from their own
 * queries plus a cheap probe while in doubt (DatabaseAvailabilityMonitor); the booster from its
 * lease queries alone (booster/leadership/db-reachability.ts).
 */
export interface DatabaseAvailabilityView {
  isUp(): boolean;
  /** Called on every change; `downMs` is set when the database is back. */
  onChange(l: (up: boolean, downMs?: number) => void): void;
}

export interface AvailabilityOptions {
  /** A round trip on a connection of its own (not the pool's): resolves when the database answered. */
  probe: () => Promise<void>;
  log?: Logger;
  clock?: () => number;
  /** Queries waiting this long with no answer at all make the monitor probe. */
  noAnswerMs?: number;
  /** Probes while unreachable (and while in doubt). */
  probeIntervalMs?: number;
  probeTimeoutMs?: number;
  /** OMFLOW_DB_OUTAGE_GRACE_MS: how long callers treat an outage as a hiccup (see `withinGrace`). */
  graceMs: number;
}

/**
 * One process's view of the database. Transitions only on change (Traefik style): one WARN
 * `database unreachable` when it goes away, one INFO `database reachable again` with
 * `{ downMs }` when it answers again. A failed query alone is not an outage: it triggers a probe,
 * and only a probe that fails too makes the database unreachable (a killed backend, a slow
 * statement are not outages). While unreachable the probe repeats every `probeIntervalMs`; the
 * first answer — probe or query — ends the outage.
 */
export class DatabaseAvailabilityMonitor implements DatabaseAvailabilityView {
  #up = true;
  #downSince = 0;
  #lastAnswerAt: number;
  #suspectSince = 0;
  #pending = 0;
  #probing = false;
  /** Probes that timed out but still hold a connection attempt (a paused network): bounded. */
  #hungProbes = 0;
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;
  readonly #listeners: ((up: boolean, downMs?: number) => void)[] = [];
  readonly #clock: () => number;
  readonly #noAnswerMs: number;
  readonly #probeIntervalMs: number;
  readonly #probeTimeoutMs: number;
  readonly graceMs: number;

  constructor(private readonly opts: AvailabilityOptions) {
    this.#clock = opts.clock ?? Date.now;
    this.#noAnswerMs = opts.noAnswerMs ?? 1000;
    this.#probeIntervalMs = opts.probeIntervalMs ?? 250;
    this.#probeTimeoutMs = opts.probeTimeoutMs ?? 2000;
    this.graceMs = opts.graceMs;
    this.#lastAnswerAt = this.#clock();
    // Notices queries that hang (a stalled server, a paused network) while they hang.
    this.#timer = setInterval(() => this.#checkSilence(), Math.max(50, Math.round(this.#noAnswerMs / 2)));
    this.#timer.unref();
  }

  isUp(): boolean {
    return this.#up;
  }

  /** When the outage began (clock ms), or null while reachable. */
  downSince(): number | null {
    return this.#up ? null : this.#downSince;
  }

  /** How long the database has been unreachable; 0 while reachable. */
  downForMs(): number {
    return this.#up ? 0 : Math.max(0, this.#clock() - this.#downSince);
  }

  /** Reachable, or unreachable for less than the grace: nobody should restart or eject for it yet. */
  withinGrace(): boolean {
    return this.downForMs() < this.graceMs;
  }

  onChange(l: (up: boolean, downMs?: number) => void): void {
    this.#listeners.push(l);
  }

  /** Runs a query of this process and learns from its outcome. */
  async track<T>(query: Promise<T>): Promise<T> {
    this.#pending++;
    try {
      const v = await query;
      this.#pending--;
      this.answered();
      return v;
    } catch (err) {
      this.#pending--;
      if (isNoAnswer(err)) this.failed();
      else this.answered();
      throw err;
    }
  }

  /** The database answered something (rows, or a SQL-level error). */
  answered(): void {
    const now = this.#clock();
    this.#lastAnswerAt = now;
    this.#suspectSince = 0;
    if (this.#up) return;
    this.#up = true;
    const downMs = Math.round(now - this.#downSince);
    this.opts.log?.info({ downMs }, 'database reachable again');
    for (const l of this.#listeners) l(true, downMs);
  }

  /** A query or connection attempt got no answer (refused, reset, timed out). */
  failed(): void {
    if (this.#suspectSince === 0) this.#suspectSince = this.#clock();
    this.#startProbing();
  }

  /** Stops the timers; idempotent. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #checkSilence(): void {
    if (this.#stopped || this.#pending === 0 || !this.#up) return;
    const now = this.#clock();
    if (now - this.#lastAnswerAt < this.#noAnswerMs) return;
    if (this.#suspectSince === 0) this.#suspectSince = Math.max(this.#lastAnswerAt, now - this.#noAnswerMs);
    this.#startProbing();
  }

  #wentDown(): void {
    if (!this.#up) return;
    this.#up = false;
    this.#downSince = this.#suspectSince || this.#clock();
    this.opts.log?.warn({ graceMs: this.graceMs }, 'database unreachable');
    for (const l of this.#listeners) l(false);
  }

  /** Probes until the database answers (or, while still up, until one probe settled the doubt). */
  #startProbing(): void {
    if (this.#probing || this.#stopped) return;
    this.#probing = true;
    void (async () => {
      try {
        while (!this.#stopped) {
          if (await this.#probeOnce()) {
            this.answered();
            return;
          }
          this.#wentDown();
          await new Promise((r) => setTimeout(r, this.#probeIntervalMs).unref());
        }
      } finally {
        this.#probing = false;
      }
    })();
  }

  async #probeOnce(): Promise<boolean> {
    if (this.#hungProbes >= MAX_HUNG_PROBES) return false;
    let timer: NodeJS.Timeout | undefined;
    const attempt = this.opts.probe();
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('probe timeout')), this.#probeTimeoutMs);
      });
      await Promise.race([attempt, timeout]);
      return true;
    } catch {
      this.#hungProbes++;
      void attempt.catch(() => {}).finally(() => this.#hungProbes--);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }
}

const MAX_HUNG_PROBES = 3;

/** Connection-level failures (translated to COMMON_ERR_DB_CONNECTION); SQL errors are answers. */
function isNoAnswer(err: unknown): boolean {
  return CommonErrors.COMMON_ERR_DB_CONNECTION.is(err);
}

/**
 * True for "the database did not answer" (COMMON_ERR_DB_CONNECTION). Background loops log such
 * failures at debug: the monitor already logged the outage once, a line per tick would flood.
 */
export function isDatabaseUnreachable(err: unknown): boolean {
  return isNoAnswer(err);
}

/** WARN for a real failure, debug while the database is unreachable (logged once elsewhere). */
export function levelFor(err: unknown): 'warn' | 'debug' {
  return isNoAnswer(err) ? 'debug' : 'warn';
}
