/**
 * Fencing by epoch: a server remembers the newest booster epoch it has seen (dispatches,
 * proxied requests, heartbeat replies) and refuses anything older. A zombie active, whose
 * lease another booster has taken with a higher epoch, can therefore do no harm.
 */
export class EpochFence {
  #highest = 0;

  get highest(): number {
    return this.#highest;
  }

  /** Records `epoch` from an authenticated source; false when it is older than one already seen (caller refuses). */
  admit(epoch: number): boolean {
    if (epoch < this.#highest) return false;
    this.#highest = epoch;
    return true;
  }

  /**
   * True when `epoch` is older than one already seen. For unauthenticated sources (the
   * X-Booster-Epoch of a proxied request): they may be refused by the fence but never raise
   * it, or anyone reaching the server could fence the real booster out.
   */
  isStale(epoch: number): boolean {
    return epoch < this.#highest;
  }

  /** Parses the X-Booster-Epoch header value; undefined when absent or malformed. */
  static parseHeader(value: string | string[] | undefined): number | undefined {
    if (typeof value !== 'string' || !/^\d{1,15}$/.test(value)) return undefined;
    return Number(value);
  }
}
