import type { AgentState, Heartbeat } from '../../common/protocol/messages.js';
import { ConcurrencyLimit, type ConcurrencyLimitOptions, DEFAULT_LIMIT_OPTIONS } from './concurrency-limit.js';

/**
 * The booster's view of the app servers: what heartbeats, health checks, passive failures
 * and the database say about each one, and the choice of a server for a request (policy).
 * No I/O here; the proxy, the health checker and the stores feed it. Entries are handed out
 * read-only (`ServerView`): every change goes through a method here, so the table always
 * knows when to re-evaluate.
 */
export type ServerState = 'up' | 'down' | 'draining' | 'ejected';

export interface TableOptions {
  heartbeatTimeoutMs: number;
  healthRise: number;
  healthFall: number;
  ejectAfter5xx: number;
  ejectMs: number;
  maxEjectedPercent: number;
  slowStartMs: number;
  maxInflightPerServer: number;
  /** Learn each server's concurrency limit from its time to headers (booster/concurrency-limit.ts); false: only the fixed maximum. */
  adaptiveLimit?: boolean;
  /** Tuning of the adaptive limit (tests); its maximum is always maxInflightPerServer. */
  limitOptions?: Partial<Omit<ConcurrencyLimitOptions, 'max'>>;
}

export interface ServerEntry {
  id: string;
  url: string;
  agentUrl: string | null;
  version: string | null;
  agentState: AgentState | null;
  weight: number;
  /** Drain flag from the database (operator or agent) or the server's own heartbeat. */
  drainingDb: boolean;
  heartbeat: Heartbeat | null;
  /** Local monotonic ms of the last accepted heartbeat (0: none in this process). */
  heartbeatAt: number;
  /** Active health: null until the first check. */
  healthy: boolean | null;
  okStreak: number;
  failStreak: number;
  /** Deep readiness (/readyz), with the same rise/fall as health: one slow answer is not an outage. */
  ready: boolean;
  readyOkStreak: number;
  readyFailStreak: number;
  /** Passive failure accounting. */
  errorStreak: number;
  ejectedUntil: number;
  ejections: number;
  /** When the server last became routable (slow start). */
  upSince: number;
  inflight: number;
  /** Proxied requests still waiting for the server's response headers (what the adaptive limit bounds). */
  pending: number;
  /** Adaptive concurrency limit (null: off). */
  limiter: ConcurrencyLimit | null;
  /** Leader with workers: the sum of the workers' limits (each worker learns its own). */
  reportedLimit: number | null;
  /** Steps dispatched since the last heartbeat (not yet in its runningSteps). */
  outstandingSteps: number;
  /** Last state reported through onTransition. */
  lastState: ServerState;
  /** Servers beyond the license limit are not routed. */
  licensed: boolean;
}

export type UpsertFields = {
  id: string;
  url: string;
  agentUrl?: string | null;
  version?: string | null;
  draining?: boolean;
  weight?: number;
  agentState?: AgentState | null;
};

/** An entry as the rest of the booster sees it: read-only, changed only through the table. */
export type ServerView = Readonly<ServerEntry>;

export type Transition = { server: ServerView; from: ServerState; to: ServerState; reason: string };

/**
 * What a data-plane worker needs of one server to route exactly like the leader (ADR 0010):
 * the leader's state and the inputs of the choice. Times are relative (each process has its
 * own monotonic clock).
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

export class ServerTable {
  readonly #servers = new Map<string, ServerEntry>();
  #list: ServerEntry[] = [];
  #routable: ServerEntry[] = [];
  #maxServers: number | null = null;

  constructor(
    private readonly opts: TableOptions,
    private readonly clock: () => number,
    private readonly onTransition: (t: Transition) => void,
  ) {}

  get servers(): ReadonlyMap<string, ServerView> {
    return this.#servers;
  }

  get list(): readonly ServerView[] {
    return this.#list;
  }

  /** Creates or updates an entry from a database row or a heartbeat. */
  upsert(fields: UpsertFields): ServerView {
    return this.#entry(fields);
  }

  #entry(fields: UpsertFields): ServerEntry {
    let e = this.#servers.get(fields.id);
    if (!e) {
      e = {
        id: fields.id,
        url: fields.url,
        agentUrl: fields.agentUrl ?? null,
        version: fields.version ?? null,
        agentState: fields.agentState ?? null,
        weight: fields.weight ?? 100,
        drainingDb: fields.draining ?? false,
        heartbeat: null,
        heartbeatAt: 0,
        healthy: null,
        okStreak: 0,
        failStreak: 0,
        ready: true,
        readyOkStreak: 0,
        readyFailStreak: 0,
        errorStreak: 0,
        ejectedUntil: 0,
        ejections: 0,
        upSince: 0,
        inflight: 0,
        pending: 0,
        limiter: this.opts.adaptiveLimit
          ? new ConcurrencyLimit({ ...DEFAULT_LIMIT_OPTIONS, ...this.opts.limitOptions, max: this.opts.maxInflightPerServer }, this.clock())
          : null,
        reportedLimit: null,
        outstandingSteps: 0,
        lastState: 'down',
        licensed: true,
      };
      this.#servers.set(e.id, e);
      this.#list = [...this.#servers.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    } else {
      e.url = fields.url;
      if (fields.agentUrl !== undefined) e.agentUrl = fields.agentUrl;
      if (fields.version !== undefined) e.version = fields.version;
      if (fields.draining !== undefined) e.drainingDb = fields.draining;
      if (fields.weight !== undefined) e.weight = fields.weight;
      if (fields.agentState !== undefined) e.agentState = fields.agentState;
    }
    return e;
  }

  /** Accepts a heartbeat; false when it is older than the last one of the same process start. */
  heartbeat(hb: Heartbeat): { entry: ServerView; accepted: boolean; isNew: boolean } {
    const existed = this.#servers.has(hb.nodeId);
    const prev = this.#servers.get(hb.nodeId)?.heartbeat;
    if (prev && prev.startedAt === hb.startedAt && hb.seq <= prev.seq) return { entry: this.#servers.get(hb.nodeId)!, accepted: false, isNew: false };
    const e = this.#entry({ id: hb.nodeId, url: hb.url, agentUrl: hb.agentUrl ?? undefined, version: hb.version });
    e.heartbeat = hb;
    e.heartbeatAt = this.clock();
    e.outstandingSteps = 0;
    this.evaluate();
    return { entry: e, accepted: true, isNew: !existed };
  }

  /** Drain flag from the database (operator or agent); false for an unknown server. */
  setDraining(id: string, draining: boolean): boolean {
    const e = this.#servers.get(id);
    if (!e) return false;
    e.drainingDb = draining;
    this.evaluate();
    return true;
  }

  /** Latest agent report; false for an unknown server. */
  setAgentState(id: string, state: AgentState, agentUrl: string | null): boolean {
    const e = this.#servers.get(id);
    if (!e) return false;
    e.agentState = state;
    e.agentUrl = agentUrl;
    return true;
  }

  /** A proxied request starts on a server (counts against its limits); returns how many were waiting for its headers before it. */
  startRequest(v: ServerView): number {
    const e = v as ServerEntry;
    e.inflight++;
    return e.pending++;
  }

  /**
   * The server's response headers arrived after `ms`; `pendingAtSend` is what startRequest
   * returned. True when this freed a slot of a limit that bounds the server and it has room:
   * one queued request may take it (a slot no limit was short of makes no room).
   */
  headersReceived(v: ServerView, ms: number, pendingAtSend: number): boolean {
    const e = v as ServerEntry;
    e.pending--;
    e.limiter?.sample(ms, pendingAtSend, this.clock());
    return e.limiter !== null && this.hasRoom(e);
  }

  /**
   * The request is over; `headersSeen` false when it ended before headersReceived (its pending
   * slot is freed here). True, as for headersReceived, when a queued request may take its slot.
   */
  endRequest(v: ServerView, headersSeen: boolean): boolean {
    const e = v as ServerEntry;
    let freed = e.inflight >= this.opts.maxInflightPerServer;
    e.inflight--;
    if (!headersSeen) {
      e.pending--;
      if (e.limiter) freed = true;
    }
    return freed && this.hasRoom(e);
  }

  /** Room for one more request: under the fixed in-flight maximum and the adaptive limit. */
  hasRoom(e: ServerView): boolean {
    return e.inflight < this.opts.maxInflightPerServer && (e.limiter === null || e.pending < e.limiter.limit);
  }

  /** The concurrency limit to show: the workers' sum, this process's own, or the fixed maximum. */
  concurrencyLimitOf(e: ServerView): number {
    return e.reportedLimit ?? e.limiter?.limit ?? this.opts.maxInflightPerServer;
  }

  /** Leader with workers: the sum of the workers' adaptive limits for a server (status and metrics). */
  setReportedLimit(id: string, limit: number): void {
    const e = this.#servers.get(id);
    if (e) e.reportedLimit = limit;
  }

  /** A step was leased to this server and is on its way (until its next heartbeat counts it). */
  stepDispatched(v: ServerView): void {
    (v as ServerEntry).outstandingSteps++;
  }

  /** A dispatched step was refused or failed: its room is free again. */
  stepReturned(v: ServerView): void {
    const e = v as ServerEntry;
    e.outstandingSteps = Math.max(0, e.outstandingSteps - 1);
  }

  setMaxServers(max: number | null): void {
    this.#maxServers = max;
  }

  stateOf(e: ServerView, now = this.clock()): ServerState {
    if (e.heartbeatAt === 0 || now - e.heartbeatAt > this.opts.heartbeatTimeoutMs) return 'down';
    if (e.healthy === false || !e.ready) return 'down';
    if (e.drainingDb || e.heartbeat?.draining) return 'draining';
    if (e.ejectedUntil > now) return 'ejected';
    return 'up';
  }

  /** Recomputes states, reports transitions, rebuilds the routable list. Cheap; call often. */
  evaluate(): void {
    const now = this.clock();
    const routable: ServerEntry[] = [];
    let licensedSlots = this.#maxServers ?? Infinity;
    for (const e of this.#list) {
      const s = this.stateOf(e, now);
      if (s !== e.lastState) {
        const from = e.lastState;
        e.lastState = s;
        if (s === 'up' && (from === 'down' || from === 'ejected')) e.upSince = now;
        this.onTransition({ server: e, from, to: s, reason: this.#reason(e, s, now) });
      }
      // License limit: the first N live servers (by id) are licensed, the rest are not routed.
      if (s !== 'down') {
        e.licensed = licensedSlots > 0;
        if (licensedSlots > 0) licensedSlots--;
      } else e.licensed = true;
      if (s === 'up' && e.licensed) routable.push(e);
    }
    this.#routable = routable;
  }

  #reason(e: ServerView, s: ServerState, now: number): string {
    if (s === 'down') {
      if (e.heartbeatAt === 0 || now - e.heartbeatAt > this.opts.heartbeatTimeoutMs) return 'heartbeat timeout';
      if (e.healthy === false) return 'health check failing';
      return 'readiness check failing';
    }
    if (s === 'draining') return e.drainingDb ? 'drained' : 'server reports draining';
    if (s === 'ejected') return 'passive ejection';
    return 'healthy';
  }

  get routable(): readonly ServerView[] {
    return this.#routable;
  }

  /** The leader's table as a worker mirrors it: states, load inputs, slow start, ejection. */
  snapshot(now = this.clock()): TableMirror {
    const servers: MirroredServer[] = [];
    for (const e of this.#list) {
      const state = this.stateOf(e, now);
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
    return { servers, maxServers: this.#maxServers };
  }

  /**
   * A worker takes the leader's snapshot: each entry is set so that stateOf() gives the
   * leader's state, routing inputs are the leader's; local in-flight counts and error
   * streaks stay. Servers the leader no longer lists are dropped.
   */
  mirror(m: TableMirror): void {
    const now = this.clock();
    this.#maxServers = m.maxServers;
    const seen = new Set<string>();
    for (const s of m.servers) {
      seen.add(s.id);
      const e = this.#entry({ id: s.id, url: s.url, weight: s.weight });
      e.heartbeat = s.heartbeat;
      e.heartbeatAt = s.state === 'down' ? 0 : now;
      e.healthy = s.state !== 'down';
      e.ready = true;
      e.drainingDb = s.state === 'draining';
      e.ejectedUntil = s.state === 'ejected' ? now + Math.max(1, s.ejectedForMs) : 0;
    }
    if (seen.size !== this.#servers.size) {
      for (const id of [...this.#servers.keys()]) if (!seen.has(id)) this.#servers.delete(id);
      this.#list = [...this.#servers.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    }
    this.evaluate();
    // After evaluate: a local down → up transition must not restart the leader's slow start.
    for (const s of m.servers) {
      const e = this.#servers.get(s.id);
      if (e) e.upSince = s.upForMs >= 0 ? now - s.upForMs : 0;
    }
  }

  /** Leader with workers: in-flight counts are the sum the workers report (status and metrics). */
  setInflight(id: string, inflight: number): void {
    const e = this.#servers.get(id);
    if (e) e.inflight = inflight;
  }

  /** Slow-start factor in (0, 1]. */
  rampOf(e: ServerView, now = this.clock()): number {
    if (this.opts.slowStartMs <= 0 || e.upSince === 0) return 1;
    const f = (now - e.upSince) / this.opts.slowStartMs;
    return f >= 1 ? 1 : Math.max(0.1, f);
  }

  /** Reported load: what the server said in its last heartbeat. */
  reportedLoad(e: ServerView): number {
    const hb = e.heartbeat;
    if (!hb) return 0;
    return hb.inflight + hb.dbPool.waiting + hb.eventLoopLagMs / 10;
  }

  /**
   * Power of two choices: two distinct candidates drawn by weight, the lower of
   * (reported load + local in-flight + 1) / weight wins. A server in slow start is taken only
   * with probability ramp, so its share grows smoothly. Servers at the in-flight limit are
   * skipped, and so are those at their adaptive limit. Returns undefined when none has room
   * (caller queues) and null when none is routable.
   */
  pick(exclude?: ReadonlySet<string>, random: () => number = Math.random): ServerView | null | undefined {
    let pool = this.#routable;
    if (pool.length === 0) pool = this.#panicPool();
    if (exclude?.size) pool = pool.filter((e) => !exclude.has(e.id));
    if (pool.length === 0) return null;
    let free = pool;
    if (!pool.every((e) => this.hasRoom(e))) {
      free = pool.filter((e) => this.hasRoom(e));
      if (free.length === 0) return undefined;
    }
    if (free.length === 1) return free[0];
    const a = this.#draw(free, random, null);
    const b = this.#draw(free, random, a);
    const now = this.clock();
    const sa = (this.reportedLoad(a) + a.inflight + 1) / a.weight;
    const sb = (this.reportedLoad(b) + b.inflight + 1) / b.weight;
    let first = sa < sb ? a : sb < sa ? b : random() < 0.5 ? a : b;
    const second = first === a ? b : a;
    const ramp = this.rampOf(first, now);
    if (ramp < 1 && random() >= ramp) first = second;
    return first;
  }

  #draw(pool: readonly ServerEntry[], random: () => number, not: ServerEntry | null): ServerEntry {
    let total = 0;
    for (const e of pool) if (e !== not) total += e.weight;
    let r = random() * total;
    for (const e of pool) {
      if (e === not) continue;
      r -= e.weight;
      if (r < 0) return e;
    }
    return pool[pool.length - 1] === not ? pool[pool.length - 2] : pool[pool.length - 1];
  }

  /** Panic floor: when every live server is ejected, route to the ejected ones anyway. */
  #panicPool(): ServerEntry[] {
    const now = this.clock();
    return this.#list.filter((e) => e.licensed && this.stateOf(e, now) === 'ejected');
  }

  /** Passive outcome of a proxied request. `weight` 5 for a connect error, 1 for a 5xx. */
  recordFailure(v: ServerView, weight: number): boolean {
    const e = v as ServerEntry;
    e.errorStreak += weight;
    if (e.errorStreak < this.opts.ejectAfter5xx) return false;
    return this.#eject(e);
  }

  recordSuccess(v: ServerView): void {
    if (v.errorStreak !== 0) (v as ServerEntry).errorStreak = 0;
  }

  #eject(e: ServerEntry): boolean {
    const now = this.clock();
    if (e.ejectedUntil > now) return false;
    const live = this.#list.filter((s) => {
      const st = this.stateOf(s, now);
      return st === 'up' || st === 'ejected';
    });
    const ejected = live.filter((s) => s.ejectedUntil > now).length;
    // Never eject the last routable server, nor more than the configured share.
    if (live.length - ejected <= 1 || ((ejected + 1) * 100) / live.length > this.opts.maxEjectedPercent) return false;
    e.ejections = Math.min(e.ejections + 1, 4);
    e.ejectedUntil = now + this.opts.ejectMs * 2 ** (e.ejections - 1);
    e.errorStreak = 0;
    this.evaluate();
    return true;
  }

  /**
   * Result of an active check; `ready` when /readyz was asked too. Readiness rises and falls
   * like health (healthRise/healthFall consecutive results): a single /readyz that was slow on a
   * loaded host used to take the server out until the next deep check, 5 s later, and a standby
   * that became active meanwhile answered 503 BOOSTER_ERR_NO_SERVER for those seconds.
   */
  recordHealth(v: ServerView, ok: boolean, ready?: boolean): void {
    const e = v as ServerEntry;
    if (ready === true) {
      e.readyFailStreak = 0;
      e.readyOkStreak++;
      if (!e.ready && e.readyOkStreak >= this.opts.healthRise) e.ready = true;
    } else if (ready === false) {
      e.readyOkStreak = 0;
      e.readyFailStreak++;
      if (e.ready && e.readyFailStreak >= this.opts.healthFall) e.ready = false;
    }
    if (ok) {
      e.okStreak++;
      e.failStreak = 0;
      if (e.healthy === null || (e.healthy === false && e.okStreak >= this.opts.healthRise)) e.healthy = true;
      if (e.healthy && e.ejectedUntil > 0 && e.ejectedUntil <= this.clock()) e.ejections = Math.max(0, e.ejections - 1);
    } else {
      e.failStreak++;
      e.okStreak = 0;
      if (e.healthy === null || (e.healthy !== false && e.failStreak >= this.opts.healthFall)) e.healthy = false;
    }
    this.evaluate();
  }

  /** True while a server's readiness is failing or not yet back, so the checker asks /readyz again soon. */
  readinessSettling(e: ServerView): boolean {
    return !e.ready || e.readyFailStreak > 0;
  }

  /** True while a server's health is settling, so the checker polls it faster. */
  changing(e: ServerView): boolean {
    return e.healthy === null || e.okStreak < this.opts.healthRise || (e.failStreak > 0 && e.healthy !== false) || e.ejectedUntil > this.clock();
  }

  /** Step capacity left on a server (heartbeat capacity − running − dispatched since). */
  stepRoom(e: ServerView): number {
    const hb = e.heartbeat;
    if (!hb) return 0;
    return hb.stepCapacity - hb.runningSteps - e.outstandingSteps;
  }
}
