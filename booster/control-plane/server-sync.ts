import type { AgentReport, Heartbeat } from '../../common/protocol/messages.js';
import { BoosterErrors } from '../errors.js';
import type { ServerTable, ServerView } from '../server-table/server-table.js';
import type { ClusterStore } from './cluster-store.js';

/**
 * Keeps the in-memory server table and the `servers` rows in step: the table is refreshed from
 * the database every second (drain flags, weights, agent state written by the other booster),
 * and heartbeats are written back only when something a row holds changed (or every 5 s), so
 * a fleet heartbeating several times a second costs the database little.
 */
const HEARTBEAT_WRITE_EVERY_MS = 5000;

/** A heartbeat refused because another live server holds its node id (shown in status until it stops). */
export interface DuplicateNodeId {
  id: string;
  /** The URL refused, and the one that keeps the id. */
  url: string;
  registeredUrl: string;
  /** Local monotonic ms of the last refused heartbeat. */
  lastSeen: number;
}

export class ServerSync {
  /** Agent reports that arrived before the server's first row existed. */
  readonly #pendingAgentStates = new Map<string, AgentReport>();
  readonly #hbWritten = new Map<string, { at: number; key: string }>();
  readonly #duplicates = new Map<string, DuplicateNodeId>();

  constructor(
    private readonly table: ServerTable,
    private readonly store: ClusterStore,
    private readonly clock: () => number,
    /** A heartbeat with a node id another live server holds, first seen (the event log records it). */
    private readonly onDuplicate: (d: DuplicateNodeId) => void = () => {},
  ) {}

  /** Duplicate node ids refused within the last `withinMs`. */
  duplicates(withinMs: number): DuplicateNodeId[] {
    const now = this.clock();
    for (const [k, d] of this.#duplicates) if (now - d.lastSeen > withinMs) this.#duplicates.delete(k);
    return [...this.#duplicates.values()];
  }

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
    // A row that went (retired, here or on the other booster) takes its entry along, unless that
    // server heartbeats here again (its row is then written anew).
    const ids = new Set(rows.map((r) => r.id));
    for (const e of this.table.list) if (!ids.has(e.id) && !this.table.heartbeatLive(e)) this.table.remove(e.id);
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

  /**
   * Feeds a heartbeat to the table and the database; the entry, or null when it was stale.
   * Throws BOOSTER_ERR_DUPLICATE_NODE_ID when another live server holds the node id.
   */
  async heartbeat(hb: Heartbeat): Promise<ServerView | null> {
    const { entry, accepted, conflict } = this.table.heartbeat(hb);
    if (conflict !== undefined) {
      const key = `${hb.nodeId} ${hb.url}`;
      const d: DuplicateNodeId = { id: hb.nodeId, url: hb.url, registeredUrl: conflict, lastSeen: this.clock() };
      if (!this.#duplicates.has(key)) this.onDuplicate(d);
      this.#duplicates.set(key, d);
      throw BoosterErrors.BOOSTER_ERR_DUPLICATE_NODE_ID(undefined, { nodeId: hb.nodeId, url: hb.url, registeredUrl: conflict });
    }
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

  /** Operator weight; false for a server the database does not know. */
  async setWeight(id: string, weight: number): Promise<boolean> {
    if (!(await this.store.setWeight(id, weight))) return false;
    const e = this.table.servers.get(id);
    if (e) this.table.upsert({ id, url: e.url, weight });
    return true;
  }

  /**
   * Forgets a server for good (its row and entry); false for an unknown one. Refused with
   * BOOSTER_ERR_SERVER_LIVE while it heartbeats, here or (database clock) to the other booster.
   */
  async retire(id: string, heartbeatTimeoutMs: number): Promise<boolean> {
    const e = this.table.servers.get(id);
    const live = () => BoosterErrors.BOOSTER_ERR_SERVER_LIVE(undefined, { id });
    if (e && this.table.heartbeatLive(e)) throw live();
    // Rows are written at most every HEARTBEAT_WRITE_EVERY_MS: live means written within that plus the timeout.
    const outcome = await this.store.retireServer(id, heartbeatTimeoutMs + HEARTBEAT_WRITE_EVERY_MS);
    if (outcome === 'live') throw live();
    this.table.remove(id);
    this.#hbWritten.delete(id);
    return outcome === 'retired';
  }
}
