import { signClusterRequest } from '../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../common/protocol/headers.js';
import type { AgentReport } from '../common/protocol/messages.js';
import type { Logger } from '../common/log.js';

export interface BoosterCallResult {
  url: string;
  ok: boolean;
  status?: number;
}

/**
 * Signed calls from this agent to EVERY booster (active and standby): a booster that is down
 * is skipped, the others still hear about the drain or the state change.
 */
export class BoosterClient {
  constructor(
    private readonly urls: readonly string[],
    private readonly auth: { secret: string; nodeId: string },
    private readonly log: Logger,
    private readonly timeoutMs = 2000,
  ) {}

  get configured(): boolean {
    return this.urls.length > 0;
  }

  async post(path: string, payload: unknown): Promise<BoosterCallResult[]> {
    const body = JSON.stringify(payload ?? {});
    return Promise.all(
      this.urls.map(async (url) => {
        try {
          const res = await fetch(url + path, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...signClusterRequest(this.auth.secret, this.auth.nodeId, 'POST', path, body) },
            body,
            signal: AbortSignal.timeout(this.timeoutMs),
          });
          await res.arrayBuffer();
          return { url, ok: res.ok, status: res.status };
        } catch {
          return { url, ok: false };
        }
      }),
    );
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
