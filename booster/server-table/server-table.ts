import type { AgentState, Heartbeat } from '../../common/protocol/messages.js';
import { type Choice, type ChoiceInput, choose, rampOf, reportedLoad } from './choice.js';
import { ConcurrencyLimit, type ConcurrencyLimitOptions, DEFAULT_LIMIT_OPTIONS } from './concurrency-limit.js';
import { type HealthOptions, type HealthState, healthSettling, readinessSettling, recordCheck } from './health-state.js';
import { countFailure, countSuccess, type EjectionOptions, type EjectionState, forgiveAfterHealthyCheck, isEjected, tryEject } from './outlier-ejection.js';

/**
 * The booster's view of the app servers: what heartbeats, health checks, passive failures
 * and the database say about each one. No I/O here; the proxy, the health checker and server
 * sync feed it. A registry over policy files, as HAProxy's lb_*.c hook into its core: each
 * decision is theirs (choice.ts, outlier-ejection.ts, health-state.ts, concurrency-limit.ts),
 * the entries, the transitions and the request accounting are the table's. Entries are handed
 * out read-only (`ServerView`): every change goes through a method here, so the table always
 * knows when to re-evaluate.
 */
export type ServerState = 'up' | 'down' | 'draining' | 'ejected';

export interface TableOptions extends HealthOptions, EjectionOptions {
  heartbeatTimeoutMs: number;
  slowStartMs: number;
  maxInflightPerServer: number;
  /** Learn each server's concurrency limit from its time to headers (booster/concurrency-limit.ts); false: only the fixed maximum. */
  adaptiveLimit?: boolean;
  /** Tuning of the adaptive limit (tests); its maximum is always maxInflightPerServer. */
  limitOptions?: Partial<Omit<ConcurrencyLimitOptions, 'max'>>;
}

export interface ServerEntry extends HealthState, EjectionState {
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
  /** When the server last became routable (slow start). */
  upSince: number;
  inflight: number;
  /** Proxied requests still waiting for the server's response headers (what the adaptive limit bounds). */
  pending: number;
  /** Adaptive concurrency limit (null: off). */
  limiter: ConcurrencyLimit | null;
  /** Primary with workers: the sum of the workers' limits (each worker learns its own). */
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

export class ServerTable {
  readonly #servers = new Map<string, ServerEntry>();
  #list: ServerEntry[] = [];
  #routable: ServerEntry[] = [];
  #maxServers: number | null = null;
  readonly #choice: ChoiceInput<ServerEntry>;

  constructor(
    private readonly opts: TableOptions,
    protected readonly clock: () => number,
    private readonly onTransition: (t: Transition) => void,
  ) {
    this.#choice = {
      routable: () => this.#routable,
      ejected: () => this.#panicPool(),
      hasRoom: (e) => this.hasRoom(e),
      clock,
      slowStartMs: opts.slowStartMs,
    };
  }

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

  /** Primary with workers: the sum of the workers' adaptive limits for a server (status and metrics). */
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

  /** Servers the license lets the booster route (null: no limit). */
  get maxServers(): number | null {
    return this.#maxServers;
  }

  /** Forgets a server (a worker's mirror drops what the primary no longer lists). */
  remove(id: string): void {
    if (!this.#servers.delete(id)) return;
    this.#list = this.#list.filter((e) => e.id !== id);
  }

  stateOf(e: ServerView, now = this.clock()): ServerState {
    if (e.heartbeatAt === 0 || now - e.heartbeatAt > this.opts.heartbeatTimeoutMs) return 'down';
    if (e.healthy === false || !e.ready) return 'down';
    if (e.drainingDb || e.heartbeat?.draining) return 'draining';
    if (isEjected(e, now)) return 'ejected';
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

  /** Primary with workers: in-flight counts are the sum the workers report (status and metrics). */
  setInflight(id: string, inflight: number): void {
    const e = this.#servers.get(id);
    if (e) e.inflight = inflight;
  }

  /** Slow-start factor in (0, 1] (choice.ts). */
  rampOf(e: ServerView, now = this.clock()): number {
    return rampOf(e, now, this.opts.slowStartMs);
  }

  /** Reported load: what the server said in its last heartbeat. */
  reportedLoad(e: ServerView): number {
    return reportedLoad(e);
  }

  /** The server for a request, or why there is none (choice.ts): `no-room` queues, `no-server` answers. */
  pick(exclude?: ReadonlySet<string>, random: () => number = Math.random): Choice<ServerView> {
    return choose(this.#choice, exclude, random);
  }

  /** Panic floor: when every live server is ejected, route to the ejected ones anyway. */
  #panicPool(): ServerEntry[] {
    const now = this.clock();
    return this.#list.filter((e) => e.licensed && this.stateOf(e, now) === 'ejected');
  }

  /** Passive outcome of a proxied request (outlier-ejection.ts). `weight` 5 for a connect error, 1 for a 5xx; true when it ejected the server. */
  recordFailure(v: ServerView, weight: number): boolean {
    const e = v as ServerEntry;
    if (!countFailure(e, weight, this.opts)) return false;
    const now = this.clock();
    if (!tryEject(e, () => this.#live(now), now, this.opts)) return false;
    this.evaluate();
    return true;
  }

  recordSuccess(v: ServerView): void {
    countSuccess(v as ServerEntry);
  }

  /** Servers up or ejected: what the ejection share is counted against. */
  #live(now: number): ServerEntry[] {
    return this.#list.filter((s) => {
      const st = this.stateOf(s, now);
      return st === 'up' || st === 'ejected';
    });
  }

  /** Result of an active check (health-state.ts); `ready` when /readyz was asked too. */
  recordHealth(v: ServerView, ok: boolean, ready?: boolean): void {
    const e = v as ServerEntry;
    recordCheck(e, ok, ready, this.opts);
    if (ok && e.healthy) forgiveAfterHealthyCheck(e, this.clock());
    this.evaluate();
  }

  /** True while a server's readiness is failing or not yet back, so the checker asks /readyz again soon. */
  readinessSettling(e: ServerView): boolean {
    return readinessSettling(e);
  }

  /** True while a server's health is settling or it is ejected, so the checker polls it faster. */
  changing(e: ServerView): boolean {
    return healthSettling(e, this.opts) || isEjected(e, this.clock());
  }

  /** Step capacity left on a server (heartbeat capacity − running − dispatched since). */
  stepRoom(e: ServerView): number {
    const hb = e.heartbeat;
    if (!hb) return 0;
    return hb.stepCapacity - hb.runningSteps - e.outstandingSteps;
  }
}
