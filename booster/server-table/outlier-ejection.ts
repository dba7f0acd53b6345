/**
 * Passive outlier ejection (policy only; the table calls in on each outcome and re-evaluates):
 * a connect error counts 5, a 5xx counts 1; a streak of ejectAfter5xx takes the server out for
 * ejectMs, doubling on repeats (at most 8×), never the last routable server and never more than
 * maxEjectedPercent of the live ones. A healthy active check after an ejection ended halves the
 * next one again.
 */
export interface EjectionOptions {
  ejectAfter5xx: number;
  ejectMs: number;
  maxEjectedPercent: number;
}

/** What this policy keeps on each server. */
export interface EjectionState {
  /** Weighted failures in a row. */
  errorStreak: number;
  ejectedUntil: number;
  /** Ejections not yet forgiven by healthy checks (sets the length of the next one). */
  ejections: number;
}

export function isEjected(e: Readonly<EjectionState>, now: number): boolean {
  return e.ejectedUntil > now;
}

/** A passive failure of `weight`; true once the streak reaches the ejection threshold. */
export function countFailure(e: EjectionState, weight: number, o: EjectionOptions): boolean {
  e.errorStreak += weight;
  return e.errorStreak >= o.ejectAfter5xx;
}

/** A passive success ends the streak. */
export function countSuccess(e: EjectionState): void {
  if (e.errorStreak !== 0) e.errorStreak = 0;
}

/**
 * Ejects `e` unless it is out already, it is the last routable one of `live()` (the servers up
 * or ejected), or one more would pass maxEjectedPercent. True when it was ejected.
 */
export function tryEject(e: EjectionState, live: () => readonly Readonly<EjectionState>[], now: number, o: EjectionOptions): boolean {
  if (e.ejectedUntil > now) return false;
  const all = live();
  const ejected = all.filter((s) => s.ejectedUntil > now).length;
  if (all.length - ejected <= 1 || ((ejected + 1) * 100) / all.length > o.maxEjectedPercent) return false;
  e.ejections = Math.min(e.ejections + 1, 4);
  e.ejectedUntil = now + o.ejectMs * 2 ** (e.ejections - 1);
  e.errorStreak = 0;
  return true;
}

/** A healthy active check once an ejection has ended: the next one is shorter again. */
export function forgiveAfterHealthyCheck(e: EjectionState, now: number): void {
  if (e.ejectedUntil > 0 && e.ejectedUntil <= now) e.ejections = Math.max(0, e.ejections - 1);
}
