import type { Logger } from '../common/log.js';
import { type ClusterClient, createClusterClient } from '../common/protocol/cluster-client.js';
import { BOOSTER_PATH } from '../common/protocol/headers.js';
import type { AgentReport } from '../common/protocol/messages.js';

export interface BoosterCallResult {
  url: string;
  ok: boolean;
  status?: number;
}

/**
 * Signed calls from this agent to EVERY booster (active first, then standby): a booster that
 * is down is skipped, the others still hear about the drain or the state change.
 */
export class BoosterClient {
  readonly #client: ClusterClient;

  constructor(
    private readonly urls: readonly string[],
    private readonly auth: { secret: string; nodeId: string },
    private readonly log: Logger,
    private readonly timeoutMs = 2000,
  ) {
    this.#client = createClusterClient({ ...auth, timeoutMs });
  }

  get configured(): boolean {
    return this.urls.length > 0;
  }

  async post(path: string, payload: unknown): Promise<BoosterCallResult[]> {
    const replies = await this.#client.toEveryBooster(this.urls, 'POST', path, payload ?? {}, { timeoutMs: this.timeoutMs });
    return replies.map((r) => (r.status ? { url: r.url, ok: r.ok, status: r.status } : { url: r.url, ok: false }));
  }

  async drain(reason: string): Promise<BoosterCallResult[]> {
    const r = await this.post(BOOSTER_PATH.drain(this.auth.nodeId), { reason });
    if (this.configured && !r.some((x) => x.ok)) this.log.warn({ boosters: r }, 'no booster accepted the drain; stopping anyway');
    return r;
  }

  undrain(): Promise<BoosterCallResult[]> {
    return this.post(BOOSTER_PATH.undrain(this.auth.nodeId), {});
  }

  report(report: AgentReport): Promise<BoosterCallResult[]> {
    return this.post(BOOSTER_PATH.agentReport, report);
  }
}
