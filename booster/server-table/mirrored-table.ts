import type { Heartbeat } from '../../common/protocol/messages.js';
import { type ServerEntry, type ServerState, ServerTable, type ServerView } from './server-table.js';

/**
 * The workers' mirror of the primary's table (ADR 0010): the primary sends a snapshot on every
 * transition and every 100 ms; a worker sets its entries so that they route exactly as the
 * primary's, keeps its own in-flight counts, and reports passive outcomes instead of ejecting.
 */

/**
 * What a data-plane worker needs of one server to route exactly like the primary: the
 * primary's state and the inputs of the choice. Times are relative (each process has its own
 * monotonic clock).
 */
export interface MirroredServer {
  id: string;
  url: string;
  weight: number;
  state: ServerState;
  heartbeat: Heartbeat | null;
  /** ms the server has been routable (slow start); -1: not routable. */
  upForMs: number;
  /** ms of passive ejection left. */
  ejectedForMs: number;
}

export interface TableMirror {
  servers: MirroredServer[];
  maxServers: number | null;
}

/** The primary's table as a worker mirrors it: states, load inputs, slow start, ejection. */
export function snapshotOf(table: ServerTable, now: number): TableMirror {
  const servers: MirroredServer[] = [];
  for (const e of table.list) {
    const state = table.stateOf(e, now);
    servers.push({
      id: e.id,
      url: e.url,
      weight: e.weight,
      state,
      heartbeat: e.heartbeat,
      upForMs: state === 'up' && e.upSince > 0 ? now - e.upSince : -1,
      ejectedForMs: e.ejectedUntil > now ? e.ejectedUntil - now : 0,
    });
  }
  return { servers, maxServers: table.maxServers };
}

/**
 * The worker's copy of the table: states and routing inputs come from the primary (mirror());
 * passive outcomes go to the primary instead of ejecting locally. A success is reported only
 * after a failure this worker reported, so the common path sends nothing.
 */
export class MirroredServerTable extends ServerTable {
  constructor(
    opts: ConstructorParameters<typeof ServerTable>[0],
    clock: () => number,
    private readonly report: (id: string, failure: boolean, weight: number) => void,
  ) {
    super(opts, clock, () => {});
  }

  /**
   * Takes the primary's snapshot: each entry is set so that stateOf() gives the primary's
   * state, routing inputs are the primary's; local in-flight counts and error streaks stay.
   * Servers the primary no longer lists are dropped.
   */
  mirror(m: TableMirror): void {
    const now = this.clock();
    this.setMaxServers(m.maxServers);
    const seen = new Set<string>();
    for (const s of m.servers) {
      seen.add(s.id);
      const e = this.upsert({ id: s.id, url: s.url, weight: s.weight }) as ServerEntry;
      e.heartbeat = s.heartbeat;
      e.heartbeatAt = s.state === 'down' ? 0 : now;
      e.healthy = s.state !== 'down';
      e.ready = true;
      e.drainingDb = s.state === 'draining';
      e.ejectedUntil = s.state === 'ejected' ? now + Math.max(1, s.ejectedForMs) : 0;
    }
    if (seen.size !== this.servers.size) for (const id of [...this.servers.keys()]) if (!seen.has(id)) this.remove(id);
    this.evaluate();
    // After evaluate: a local down → up transition must not restart the primary's slow start.
    for (const s of m.servers) {
      const e = this.servers.get(s.id) as ServerEntry | undefined;
      if (e) e.upSince = s.upForMs >= 0 ? now - s.upForMs : 0;
    }
  }

  override recordFailure(v: ServerView, weight: number): boolean {
    (v as ServerEntry).errorStreak += weight;
    this.report(v.id, true, weight);
    return false;
  }

  override recordSuccess(v: ServerView): void {
    if (v.errorStreak === 0) return;
    (v as ServerEntry).errorStreak = 0;
    this.report(v.id, false, 0);
  }
}
