import type { AgentReport, Heartbeat } from '../../common/protocol/messages.js';
import type { ServerTable, ServerView } from '../server-table/server-table.js';
import type { ClusterStore } from './cluster-store.js';

/**
 * Keeps the in-memory server table and the `servers` rows in step: the table is refreshed from
 * the database every second (drain flags, weights, agent state written by the other booster),
 * and heartbeats are written back only when something a row holds changed (or every 5 s), so
 * a fleet heartbeating several times a second costs the database little.
 */
const HEARTBEAT_WRITE_EVERY_MS = 5000;

export class ServerSync {
  /** Agent reports that arrived before the server's first row existed. */
  readonly #pendingAgentStates = new Map<string, AgentReport>();
  readonly #hbWritten = new Map<string, { at: number; key: string }>();

  constructor(
    private readonly table: ServerTable,
    private readonly store: ClusterStore,
    private readonly clock: () => number,
  ) {}

  #refreshing: Promise<void> | null = null;

  /**
   * Loads the rows into the table; a server that heartbeats here keeps its own URL and version.
   * One at a time: while the database stalls, the 1 s timer must not pile up waiting queries.
   */
  refresh(): Promise<void> {
    if (!this.#refreshing) {
      this.#refreshing = this.#load().finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing;
  }

  async #load(): Promise<void> {
    const rows = await this.store.loadServers();
    for (const r of rows) {
      const known = this.table.servers.get(r.id);
      this.table.upsert({
        id: r.id,
        url: known?.heartbeat ? known.url : r.url,
        agentUrl: r.agentUrl,
        version: known?.heartbeat ? undefined : r.version,
        draining: r.draining,
        weight: r.weight,
        agentState: r.agentState,
      });
    }
    this.table.evaluate();
  }

  /** Feeds a heartbeat to the table and the database; the entry, or null when it was stale. */
  async heartbeat(hb: Heartbeat): Promise<ServerView | null> {
    const { entry, accepted } = this.table.heartbeat(hb);
    if (!accepted) return null;
    const key = `${hb.url}|${hb.version}|${hb.agentUrl ?? ''}`;
    const last = this.#hbWritten.get(hb.nodeId);
    const now = this.clock();
    if (!last || last.key !== key || now - last.at > HEARTBEAT_WRITE_EVERY_MS) {
      this.#hbWritten.set(hb.nodeId, { at: now, key });
      await this.store.saveHeartbeat(hb);
      const pending = this.#pendingAgentStates.get(hb.nodeId);
      if (pending) {
        this.#pendingAgentStates.delete(hb.nodeId);
        await this.store.setAgentState(pending.nodeId, pending.state, pending.agentUrl, pending.version);
      }
    }
    return entry;
  }

  async agentReport(r: AgentReport): Promise<void> {
    this.table.setAgentState(r.nodeId, r.state, r.agentUrl);
    if (!(await this.store.setAgentState(r.nodeId, r.state, r.agentUrl, r.version))) this.#pendingAgentStates.set(r.nodeId, r);
  }

  /** Operator or agent drain; false for a server the database does not know. */
  async drain(id: string, draining: boolean, reason: string | null): Promise<boolean> {
    if (!(await this.store.setDraining(id, draining, reason))) return false;
    this.table.setDraining(id, draining);
    return true;
  }
}
