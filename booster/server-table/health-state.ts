/**
 * Active health of a server (policy only; the health checker asks, the table records here and
 * re-evaluates): /healthz and /readyz each rise after healthRise passes in a row and fall after
 * healthFall failures in a row, so one slow answer on a loaded host is not an outage.
 */
export interface HealthOptions {
  healthRise: number;
  healthFall: number;
}

/** What this policy keeps on each server. */
export interface HealthState {
  /** Active health: null until the first check. */
  healthy: boolean | null;
  okStreak: number;
  failStreak: number;
  /** Deep readiness (/readyz), with the same rise/fall as health. */
  ready: boolean;
  readyOkStreak: number;
  readyFailStreak: number;
}

/**
 * One active check: /healthz passed or not, and `ready` when /readyz was asked too. A single
 * /readyz that was slow on a loaded host used to take the server out until the next deep check,
 * 5 s later, and a standby that became active meanwhile answered 503 BOOSTER_ERR_NO_SERVER.
 */
export function recordCheck(e: HealthState, ok: boolean, ready: boolean | undefined, o: HealthOptions): void {
  if (ready === true) {
    e.readyFailStreak = 0;
    e.readyOkStreak++;
    if (!e.ready && e.readyOkStreak >= o.healthRise) e.ready = true;
  } else if (ready === false) {
    e.readyOkStreak = 0;
    e.readyFailStreak++;
    if (e.ready && e.readyFailStreak >= o.healthFall) e.ready = false;
  }
  if (ok) {
    e.okStreak++;
    e.failStreak = 0;
    if (e.healthy === null || (e.healthy === false && e.okStreak >= o.healthRise)) e.healthy = true;
  } else {
    e.failStreak++;
    e.okStreak = 0;
    if (e.healthy === null || (e.healthy !== false && e.failStreak >= o.healthFall)) e.healthy = false;
  }
}

/** Health not settled yet (first check, rising, or failing but not down): the checker polls faster. */
export function healthSettling(e: Readonly<HealthState>, o: HealthOptions): boolean {
  return e.healthy === null || e.okStreak < o.healthRise || (e.failStreak > 0 && e.healthy !== false);
}

/** Readiness failing or not back yet: the checker asks /readyz again soon. */
export function readinessSettling(e: Readonly<HealthState>): boolean {
  return !e.ready || e.readyFailStreak > 0;
}
