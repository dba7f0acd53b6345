import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../common/free-port.js';
import type { Logger } from '../../common/log.js';
import type { BoosterConfig, ClusterConfig } from '../config.js';
import type { BoosterMetrics } from '../metrics.js';
import type { ServerTable } from '../server-table/server-table.js';
import type { FromWorker, ToWorker, WorkerState } from './messages.js';

/**
 * The primary's side of the data-plane workers (ADR 0010): forks them through node:cluster with
 * SCHED_NONE (the kernel spreads accepts over the processes waiting on the one shared socket;
 * the primary never touches a client connection), pushes its state to them on every change,
 * folds their reports into the table and the metrics, restarts a worker that dies, and stops
 * them gracefully.
 */
const ENTRY = fileURLToPath(new URL(`./worker-main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url));

export interface WorkerPoolDeps {
  count: number;
  config: { cluster: ClusterConfig; booster: BoosterConfig };
  log: Logger;
  table: ServerTable;
  metrics: BoosterMetrics;
  /** The primary's loopback URL for /_booster/ (known after its listener started). */
  controlUrl: () => string;
  /** Everything but the sequence number. */
  state: () => Omit<WorkerState, 'seq'>;
}

interface Slot {
  index: number;
  worker: Worker;
  /** Its message listener is up (messages sent earlier would be lost). */
  ready: boolean;
  listening: boolean;
  ackedSeq: number;
  /** Reports received (collect() waits for one more from each). */
  reports: number;
  inflight: Map<string, number>;
  limits: Map<string, number>;
  startedAt: number;
  admitShare: number;
}

export class WorkerPool {
  readonly #d: WorkerPoolDeps;
  readonly #slots = new Map<number, Slot>();
  #seq = 0;
  #pushQueued = false;
  #stopping = false;
  #port: number;
  #restarts = 0;
  #shed = 0;
  readonly #ackWaiters = new Set<() => void>();
  readonly #listenWaiters = new Set<() => void>();
  #restartTimer: NodeJS.Timeout | null = null;
  /** Set when a worker could not listen while starting: start() fails with it instead of forking forever. */
  #startError: Error | null = null;
  #started = false;
  /** `systemctl reload` signals the primary; the certificates live in the workers' listeners. */
  readonly #forwardHup = () => {
    for (const s of this.#slots.values()) if (s.listening) s.worker.process.kill('SIGHUP');
  };

  constructor(d: WorkerPoolDeps) {
    this.#d = d;
    this.#port = d.config.booster.port;
  }

  get count(): number {
    return this.#d.count;
  }

  /** Database pressure as the workers apply it: requests they shed, and the lowest share one admits. */
  get pressure(): { shed: number; admitShare: number } {
    let admitShare = 1;
    for (const s of this.#slots.values()) admitShare = Math.min(admitShare, s.admitShare);
    return { shed: this.#shed, admitShare };
  }

  /** Forks every worker; resolves with the shared port once all of them listen. */
  async start(): Promise<number> {
    // Once set (first fork or setupPrimary) the policy is frozen for the process; every booster here wants the same.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ exec: ENTRY, execArgv: ENTRY.endsWith('.ts') ? ['--import', 'tsx'] : [], args: [] });
    const askedPort = this.#port;
    for (let attempt = 1; ; attempt++) {
      // node:cluster shares one socket per (address, port) asked for, across every booster of this
      // process: two boosters asking for port 0 would share one. So port 0 becomes a concrete free
      // port first (tests and dev only; a real booster has its port), taken again if another
      // process got it in between.
      if (askedPort === 0) this.#port = await freePort(this.#d.config.booster.host);
      this.#startError = null;
      this.#stopping = false;
      for (let i = 0; i < this.#d.count; i++) this.#fork(i);
      try {
        await this.#whenListening(this.#d.count);
        break;
      } catch (err) {
        await this.stop(5000);
        if (askedPort !== 0 || (err as { code?: string }).code !== 'EADDRINUSE' || attempt >= 3) throw err;
      }
    }
    process.on('SIGHUP', this.#forwardHup);
    this.#started = true;
    return this.#port;
  }

  #whenListening(n: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#listenWaiters.delete(check);
        reject(new Error(`data-plane workers did not start listening within 60 s (${this.#listening()} of ${n})`));
      }, 60_000);
      const check = () => {
        if (this.#startError) {
          clearTimeout(timer);
          this.#listenWaiters.delete(check);
          reject(this.#startError);
          return;
        }
        if (this.#listening() < n) return;
        clearTimeout(timer);
        this.#listenWaiters.delete(check);
        resolve();
      };
      this.#listenWaiters.add(check);
      check();
    });
  }

  #listening(): number {
    let n = 0;
    for (const s of this.#slots.values()) if (s.listening) n++;
    return n;
  }

  #fork(index: number): void {
    const worker = cluster.fork();
    const slot: Slot = {
      index,
      worker,
      ready: false,
      listening: false,
      ackedSeq: 0,
      reports: 0,
      inflight: new Map(),
      limits: new Map(),
      startedAt: Date.now(),
      admitShare: 1,
    };
    this.#slots.set(index, slot);
    worker.on('message', (m: FromWorker) => this.#onMessage(slot, m));
    worker.on('error', (err) => this.#d.log.warn({ err, worker: index }, 'data-plane worker channel error'));
    worker.on('exit', (code, signal) => this.#onExit(slot, code, signal));
  }

  #onMessage(slot: Slot, m: FromWorker): void {
    const { table, metrics } = this.#d;
    switch (m.type) {
      case 'ready':
        slot.ready = true;
        if (this.#stopping) return void slot.worker.process.kill('SIGTERM');
        this.#send(slot, {
          type: 'init',
          index: slot.index,
          workers: this.#d.count,
          port: this.#port,
          config: this.#d.config,
          controlUrl: this.#d.controlUrl(),
          state: { seq: this.#seq, ...this.#d.state() },
        });
        return;
      case 'listening':
        slot.listening = true;
        this.#port = m.port;
        for (const w of [...this.#listenWaiters]) w();
        return;
      case 'failed': {
        const err = Object.assign(new Error(`data-plane worker could not listen: ${m.message}`), { code: m.code });
        this.#d.log.error({ err, worker: slot.index }, 'data-plane worker could not listen');
        if (!this.#started) {
          this.#startError = err;
          for (const w of [...this.#listenWaiters]) w();
        }
        return;
      }
      case 'ack':
        slot.ackedSeq = Math.max(slot.ackedSeq, m.seq);
        for (const w of [...this.#ackWaiters]) w();
        return;
      case 'passive': {
        const e = table.servers.get(m.id);
        if (!e) return;
        if (!m.failure) table.recordSuccess(e);
        else if (table.recordFailure(e, m.weight)) metrics.ejections.labels(e.id).inc();
        return;
      }
      case 'report':
        slot.reports++;
        for (const w of [...this.#ackWaiters]) w();
        slot.inflight = new Map(m.inflight);
        for (const [id] of m.inflight) table.setInflight(id, this.#inflightOf(id));
        slot.limits = new Map(m.limits);
        for (const [id] of m.limits) table.setReportedLimit(id, this.#limitOf(id));
        for (const [id, d] of m.stats) metrics.statsOf(id).add(d);
        for (const [reason, n] of m.retries) metrics.retries.labels(reason).inc(n);
        if (m.shed > 0) metrics.dbPressureShed.inc(m.shed);
        this.#shed += m.shed;
        slot.admitShare = m.admitShare;
        return;
      case 'stopped':
        return;
    }
  }

  #inflightOf(id: string): number {
    let n = 0;
    for (const s of this.#slots.values()) n += s.inflight.get(id) ?? 0;
    return n;
  }

  /** The booster's concurrency limit for a server: each worker learns its own, together they allow the sum. */
  #limitOf(id: string): number {
    let n = 0;
    for (const s of this.#slots.values()) n += s.limits.get(id) ?? 0;
    return n;
  }

  #onExit(slot: Slot, code: number | null, signal: string | null): void {
    if (this.#slots.get(slot.index) !== slot) return;
    this.#slots.delete(slot.index);
    for (const id of slot.inflight.keys()) this.#d.table.setInflight(id, this.#inflightOf(id));
    for (const w of [...this.#ackWaiters]) w();
    if (this.#stopping) return;
    this.#d.metrics.workerExits.inc();
    // A worker that lived a while starts over at the shortest delay; one that keeps dying backs off.
    if (Date.now() - slot.startedAt > 10_000) this.#restarts = 0;
    const delay = Math.min(5000, 100 * 2 ** this.#restarts++);
    this.#d.log.warn({ worker: slot.index, code, signal, restartInMs: delay }, 'data-plane worker exited; restarting it');
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (!this.#stopping && !this.#slots.has(slot.index)) this.#fork(slot.index);
    }, delay);
  }

  #send(slot: Slot, m: ToWorker): void {
    if (!slot.worker.isConnected()) return;
    slot.worker.send(m, (err: Error | null) => {
      if (err) this.#d.log.debug({ err, worker: slot.index }, 'message to a data-plane worker not delivered');
    });
  }

  #broadcast(ack: boolean): number {
    const seq = ++this.#seq;
    const m: ToWorker = { type: 'state', state: { seq, ...this.#d.state() }, ack };
    for (const s of this.#slots.values()) if (s.listening) this.#send(s, m);
    return seq;
  }

  /** Pushes the primary's state soon (coalesced within one tick): transitions, role, gate, load. */
  push(): void {
    if (this.#pushQueued) return;
    this.#pushQueued = true;
    queueMicrotask(() => {
      this.#pushQueued = false;
      this.#broadcast(false);
    });
  }

  /**
   * Pushes now and resolves once every listening worker applied it (or after `timeoutMs`):
   * after a drain answers, no worker starts a new request on the drained server.
   */
  synced(timeoutMs = 1000): Promise<void> {
    const seq = this.#broadcast(true);
    return this.#waitFor(() => {
      for (const s of this.#slots.values()) if (s.listening && s.ackedSeq < seq) return false;
      return true;
    }, timeoutMs);
  }

  /** Asks every worker for its counts now; resolves once each answered (or after `timeoutMs`). */
  collect(timeoutMs = 250): Promise<void> {
    const want = new Map<Slot, number>();
    for (const s of this.#slots.values()) {
      if (!s.listening) continue;
      want.set(s, s.reports + 1);
      this.#send(s, { type: 'report' });
    }
    return this.#waitFor(() => [...want].every(([s, n]) => s.reports >= n || this.#slots.get(s.index) !== s), timeoutMs);
  }

  #waitFor(done: () => boolean, timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.#ackWaiters.delete(waiter);
        resolve();
      };
      const waiter = () => {
        if (done()) finish();
      };
      const timer = setTimeout(finish, timeoutMs);
      this.#ackWaiters.add(waiter);
      waiter();
    });
  }

  /**
   * Graceful: every worker closes its listener, finishes its in-flight requests and exits.
   * Resolves when all exited; after `timeoutMs` the rest are killed.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.#stopping = true;
    process.off('SIGHUP', this.#forwardHup);
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    const slots = [...this.#slots.values()];
    const exits = slots.map((s) => (s.worker.isDead() ? Promise.resolve() : new Promise<void>((r) => s.worker.once('exit', () => r()))));
    // A worker still starting has no connection yet: it is simply ended.
    for (const s of slots)
      if (s.ready) this.#send(s, { type: 'stop' });
      else s.worker.process.kill('SIGTERM');
    let giveUp: NodeJS.Timeout | undefined;
    const all = Promise.all(exits).then(() => true);
    const done = await Promise.race([all, new Promise<boolean>((r) => (giveUp = setTimeout(() => r(false), timeoutMs)))]);
    clearTimeout(giveUp);
    if (!done) {
      this.#d.log.warn({ timeoutMs }, 'data-plane workers did not stop in time; killing them');
      for (const s of slots) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
      await all;
    }
  }
}
