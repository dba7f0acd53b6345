import type { DatabaseAvailabilityView } from '../../common/db/availability.js';
import type { Logger } from '../../common/log.js';

/**
 * "Is the database reachable?" as the booster sees it: the view every process has
 * (common/db/availability.ts), derived here from the lease loop's own queries instead of probes.
 * The lease decides leadership, so the booster's signal must come from the lease queries: a probe
 * on a connection of its own could answer while they hang.
 */
export type DatabaseAvailability = DatabaseAvailabilityView;

/** Where the booster's own queries report their outcome (a no-op once the shared monitor is used). */
export interface QueryOutcomeSink {
  track<T>(query: Promise<T>): Promise<T>;
}

/**
 * Derived from the booster's own queries (lease loop, step dispatcher): down once no query has
 * answered for `noAnswerMs` while one was failing or still waiting; up at the next answer.
 * A short blip below `noAnswerMs` is not an outage. `check()` is called by a timer (the lease
 * watchdog), so a query that hangs is noticed while it hangs.
 */
export class QueryOutcomeAvailability implements DatabaseAvailability, QueryOutcomeSink {
  #up = true;
  #lastAnswerAt: number;
  #lastFailureAt = -Infinity;
  #pending = 0;
  #downSince = 0;
  readonly #listeners: ((up: boolean, downMs?: number) => void)[] = [];

  constructor(
    private readonly clock: () => number,
    private readonly log: Logger,
    private readonly noAnswerMs: number,
  ) {
    this.#lastAnswerAt = clock();
  }

  isUp(): boolean {
    return this.#up;
  }

  onChange(l: (up: boolean, downMs?: number) => void): void {
    this.#listeners.push(l);
  }

  async track<T>(query: Promise<T>): Promise<T> {
    this.#pending++;
    try {
      const v = await query;
      this.#pending--;
      this.answered();
      return v;
    } catch (err) {
      this.#pending--;
      // A SQL-level refusal is still an answer; driver/connection errors are not.
      if (isAnswer(err)) this.answered();
      else this.failed();
      throw err;
    }
  }

  answered(): void {
    const now = this.clock();
    this.#lastAnswerAt = now;
    if (this.#up) return;
    this.#up = true;
    const downMs = Math.round(now - this.#downSince);
    this.log.info({ downMs }, 'database reachable again');
    for (const l of this.#listeners) l(true, downMs);
  }

  failed(): void {
    this.#lastFailureAt = this.clock();
    this.check();
  }

  check(): void {
    const now = this.clock();
    if (!this.#up || now - this.#lastAnswerAt < this.noAnswerMs) return;
    if (this.#pending === 0 && this.#lastFailureAt <= this.#lastAnswerAt) return;
    this.#up = false;
    this.#downSince = this.#lastAnswerAt;
    this.log.warn({ silentMs: Math.round(now - this.#lastAnswerAt) }, 'database unreachable');
    for (const l of this.#listeners) l(false);
  }
}

/** Errors the database itself returned (constraint, serialization), as opposed to no answer. */
function isAnswer(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('COMMON_ERR_DB_') && code !== 'COMMON_ERR_DB_CONNECTION';
}
