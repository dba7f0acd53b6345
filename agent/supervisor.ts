import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { isOmflowError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { RELEASE_ENTRY } from '../common/patch/index.js';
import { groupAlive } from '../common/process-group.js';
import { SERVER_PATH } from '../common/protocol/headers.js';
import type { AgentState } from '../common/protocol/messages.js';
import { lifelineSpawn } from '../common/supervisor-lifeline.js';
import { AgentErrors } from './errors.js';
import { type ProbeResult, probe } from './health.js';
import { cmdlineOf, isAlive, isZombie, readJsonFile, removeFile, signalGroup, sleep, writeJsonFile } from './process-control.js';
import type { ReleaseStore } from './releases.js';

/** The app server's code for "the database, not this server, failed" (server/errors.ts; the agent imports no server code). */
const DB_UNAVAILABLE = 'SERVER_ERR_DB_UNAVAILABLE';

export interface SupervisorTimings {
  startTimeoutMs: number;
  stopTimeoutMs: number;
  drainTimeoutMs: number;
  drainSettleMs: number;
  quickIntervalMs: number;
  quickTimeoutMs: number;
  deepIntervalMs: number;
  deepTimeoutMs: number;
  failureThreshold: number;
  backoffMs: number;
  backoffMaxMs: number;
  maxRecoveries: number;
  recoveryWindowMs: number;
}

export interface SupervisorDeps {
  dataDir: string;
  releases: ReleaseStore;
  /** Where the server listens (the agent checks it there). */
  server: { host: string; port: number; publicUrl: string };
  /** Environment of the server process (the agent's, plus the keys set below). */
  env: Record<string, string | undefined>;
  agentUrl: () => string;
  timings: SupervisorTimings;
  log: Logger;
  /** Ask the boosters to drain / undrain this node. */
  drain: (reason: string) => Promise<void>;
  undrain: () => Promise<void>;
  onTransition: (state: AgentState, detail?: string) => void;
  random?: () => number;
  /**
   * The agent's own view of the database (its availability monitor): tells a database outage
   * (the agent cannot reach it either: wait, a restart fixes nothing) from a server that lost
   * its way to a database the agent reaches (restart as for any failure). See ADR 0009.
   */
  database?: { isUp(): boolean; failed(): void };
}

interface PidFile {
  pid: number;
  release: string;
  version: string;
  port: number;
  startedAt: string;
}

/**
 * The app server as a cluster resource (LifeKeeper / OCF style): start, stop, quick check,
 * deep check, recover — each with its own timeout. Lifecycle operations run one at a time.
 * The server runs in its own process group (spawn detached), so stop takes its children too,
 * and holds the agent's lifeline (ADR 0022): when the agent is gone, however it went, the
 * server stops itself. Nothing outlives its supervisor.
 */
export class Supervisor {
  private state: AgentState = 'stopped';
  private detail: string | undefined;
  private child: ChildProcess | null = null;
  /** pid (= pgid) of the server (spawned, or left by a previous agent until it is stopped). */
  private pid: number | null = null;
  private version: string | null = null;
  private expectingExit = false;
  private consecutive = { quick: 0, deep: 0 };
  private recoveries: number[] = [];
  private lastDeep = 0;
  /** The last deep check said: database unreachable, for the agent too (ADR 0009). */
  private waitingForDatabase = false;
  private chain: Promise<unknown> = Promise.resolve();
  private busy = 0;
  private closed = false;
  private monitorWake: (() => void) | null = null;
  private monitorDone: Promise<void> | null = null;
  readonly pidFile: string;
  private readonly logFile: string;

  constructor(private readonly deps: SupervisorDeps) {
    this.pidFile = join(deps.dataDir, 'server.pid');
    mkdirSync(join(deps.dataDir, 'logs'), { recursive: true });
    this.logFile = join(deps.dataDir, 'logs', 'server.log');
  }

  status() {
    return {
      state: this.state,
      detail: this.detail ?? null,
      pid: this.pid,
      version: this.version,
      consecutiveFailures: Math.max(this.consecutive.quick, this.consecutive.deep),
      recentRecoveries: this.recoveries.length,
    };
  }

  get currentState(): AgentState {
    return this.state;
  }

  get serverVersion(): string | null {
    return this.version;
  }

  private get checkBase(): string {
    const host = this.deps.server.host === '0.0.0.0' || this.deps.server.host === '::' ? '127.0.0.1' : this.deps.server.host;
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.deps.server.port}`;
  }

  private transition(state: AgentState, detail?: string): void {
    if (state === this.state && detail === this.detail) return;
    this.state = state;
    this.detail = detail;
    this.deps.log.info({ state, detail }, 'agent state');
    this.deps.onTransition(state, detail);
  }

  /** Runs lifecycle operations one after another. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(async () => {
      this.busy++;
      try {
        return await fn();
      } finally {
        this.busy--;
      }
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  // ------------------------------------------------------------------ checks

  /** /healthz: is the process answering at all. One timeout is retried at once, not counted. */
  async quickCheck(): Promise<ProbeResult> {
    if (this.pid !== null && (!isAlive(this.pid) || isZombie(this.pid))) return { result: 'fail', error: 'process is gone' };
    const r = await probe(this.checkBase + SERVER_PATH.healthz, this.deps.timings.quickTimeoutMs);
    return r.result === 'timeout' ? probe(this.checkBase + SERVER_PATH.healthz, this.deps.timings.quickTimeoutMs) : r;
  }

  /**
   * The server says the database is unreachable (its /healthz or /readyz body). The agent's
   * monitor is told, so it probes on its own connection and logs the outage once.
   */
  private noteDatabase(r: ProbeResult): boolean {
    const down = r.body?.database === 'unreachable' || r.body?.code === DB_UNAVAILABLE;
    if (down) this.deps.database?.failed();
    return down;
  }

  /** /readyz: can it serve (database reachable, migrations done). One timeout is retried. */
  async deepCheck(): Promise<ProbeResult> {
    const r = await probe(this.checkBase + SERVER_PATH.readyz, this.deps.timings.deepTimeoutMs);
    return r.result === 'timeout' ? probe(this.checkBase + SERVER_PATH.readyz, this.deps.timings.deepTimeoutMs) : r;
  }

  // ------------------------------------------------------------------ start / stop

  isRunning(): boolean {
    return this.pid !== null && isAlive(this.pid) && !isZombie(this.pid);
  }

  /**
   * A server left by a previous agent of this data dir (its pid file names a live process running
   * one of our releases) is stopped, group and all, before a new one starts. It is never adopted:
   * a server stops itself when its agent goes away (the lifeline, ADR 0022), so one still alive is
   * on its way out, or was started by an agent without a lifeline. Never leaves two servers.
   */
  async replaceLeftover(): Promise<'replaced' | 'none'> {
    const pf = readJsonFile<PidFile>(this.pidFile);
    if (!pf) return 'none';
    const cmd = cmdlineOf(pf.pid);
    const ours = isAlive(pf.pid) && !isZombie(pf.pid) && (cmd === null || cmd.some((a) => a.startsWith(`${this.deps.releases.releasesDir}/`)));
    if (!ours) {
      removeFile(this.pidFile);
      return 'none';
    }
    this.pid = pf.pid;
    this.version = pf.version;
    this.deps.log.warn({ pid: pf.pid, version: pf.version }, 'stopping an app server left by a previous agent');
    await this.stopProcess();
    return 'replaced';
  }

  /** Starts the server of the current release; resolves when its deep check passes. Idempotent. */
  start(): Promise<void> {
    return this.exclusive(() => this.startInternal());
  }

  async startInternal(): Promise<void> {
    if (this.isRunning()) {
      if (this.state !== 'patching') this.transition('running');
      return;
    }
    const version = this.deps.releases.currentVersion();
    if (!version) throw AgentErrors.AGENT_ERR_NO_RELEASE();
    const releaseDir = this.deps.releases.dirOf(version);
    if (this.state !== 'patching' && this.state !== 'recovering') this.transition('starting', version);
    const out = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      // The lifeline (fd 3): the server stops itself once this agent is gone, SIGKILL included.
      const spawnOpts = lifelineSpawn(['ignore', out, out] as const, {
        ...this.deps.env,
        OMFLOW_SERVER_HOST: this.deps.server.host,
        OMFLOW_SERVER_PORT: String(this.deps.server.port),
        OMFLOW_SERVER_URL: this.deps.server.publicUrl,
        OMFLOW_SERVER_VERSION: version,
        OMFLOW_AGENT_URL: this.deps.agentUrl(),
      });
      child = spawn(process.execPath, [join(releaseDir, RELEASE_ENTRY), 'server'], { cwd: releaseDir, ...spawnOpts, detached: true });
    } finally {
      closeSync(out);
    }
    const pid = child.pid;
    if (pid === undefined) throw AgentErrors.AGENT_ERR_SERVER_EXITED('the server process could not be spawned');
    // Our end stays open as long as the child object lives; it must not keep the agent running.
    (child.stdio[3] as Socket | null)?.unref();
    this.child = child;
    this.pid = pid;
    this.version = version;
    this.expectingExit = false;
    writeJsonFile(this.pidFile, { pid, release: releaseDir, version, port: this.deps.server.port, startedAt: new Date().toISOString() } satisfies PidFile);
    let exited = false;
    child.once('exit', (code, signal) => {
      exited = true;
      // What the server started shares its group and must not outlive it: a server that crashed
      // (or died during start, when no stop follows) would leave orphans behind.
      signalGroup(pid, 'SIGKILL');
      if (this.child === child) this.child = null;
      if (!this.expectingExit && !this.closed) {
        this.deps.log.warn({ pid, code, signal }, 'app server exited');
        this.wakeMonitor();
      }
    });
    const deadline = Date.now() + this.deps.timings.startTimeoutMs;
    for (;;) {
      if (exited) {
        this.pid = null;
        removeFile(this.pidFile);
        throw AgentErrors.AGENT_ERR_SERVER_EXITED(`the server of ${version} exited during start`, { version });
      }
      const r = await probe(this.checkBase + SERVER_PATH.readyz, Math.min(this.deps.timings.deepTimeoutMs, Math.max(100, deadline - Date.now())));
      if (r.result === 'ok') break;
      this.noteDatabase(r);
      // Started, but the database is down: waiting (or restarting) would not bring it back;
      // the monitor reports it as degraded and the server connects when the database returns.
      if (r.body?.code === DB_UNAVAILABLE && this.databaseDownForAgentToo()) break;
      if (Date.now() >= deadline) {
        await this.stopProcess();
        throw AgentErrors.AGENT_ERR_START_TIMEOUT(undefined, { version, last: r });
      }
      await sleep(Math.min(200, Math.max(10, deadline - Date.now())));
    }
    this.consecutive = { quick: 0, deep: 0 };
    this.waitingForDatabase = false;
    this.lastDeep = Date.now();
    if (this.state !== 'patching') this.transition('running', version);
  }

  /** Graceful stop (drain first when asked). Idempotent. */
  stop(opts: { drain: boolean; reason?: string } = { drain: true }): Promise<void> {
    return this.exclusive(() => this.stopInternal(opts));
  }

  async stopInternal(opts: { drain: boolean; reason?: string }): Promise<void> {
    if (!this.isRunning()) {
      this.pid = null;
      removeFile(this.pidFile);
      if (this.state !== 'patching' && this.state !== 'failed' && this.state !== 'recovering') this.transition('stopped');
      return;
    }
    if (this.state !== 'patching' && this.state !== 'recovering') this.transition('stopping', opts.reason);
    if (opts.drain) await this.drainAndWait(opts.reason ?? 'agent stop');
    await this.stopProcess();
    if (this.state !== 'patching' && this.state !== 'failed' && this.state !== 'recovering') this.transition('stopped');
  }

  /** Boosters stop routing new work here; then wait for the server's in-flight count to reach 0. */
  private async drainAndWait(reason: string): Promise<void> {
    const t = this.deps.timings;
    await this.deps.drain(reason).catch((err) => this.deps.log.warn({ err }, 'drain call failed'));
    const deadline = Date.now() + t.drainTimeoutMs;
    await sleep(Math.min(t.drainSettleMs, t.drainTimeoutMs));
    while (Date.now() < deadline) {
      const r = await probe(this.checkBase + SERVER_PATH.healthz, t.quickTimeoutMs);
      const inflight = r.body?.inflight;
      // A server that does not report in-flight work relies on its own SIGTERM handling.
      if (r.result !== 'ok' || typeof inflight !== 'number' || inflight <= 0) return;
      await sleep(100);
    }
    this.deps.log.warn({ drainTimeoutMs: t.drainTimeoutMs }, 'drain timeout passed with work in flight; stopping anyway');
  }

  /** SIGTERM to the whole group, SIGKILL after the stop timeout, then whatever is left in the group. */
  private async stopProcess(): Promise<void> {
    const pid = this.pid;
    if (pid === null) return;
    this.expectingExit = true;
    const child = this.child;
    signalGroup(pid, 'SIGTERM');
    const gone = async (ms: number) => {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        if (!isAlive(pid) || isZombie(pid)) return true;
        await sleep(25);
      }
      return !isAlive(pid) || isZombie(pid);
    };
    if (!(await gone(this.deps.timings.stopTimeoutMs))) {
      this.deps.log.warn({ pid, stopTimeoutMs: this.deps.timings.stopTimeoutMs }, 'app server ignored SIGTERM; SIGKILL to its group');
      signalGroup(pid, 'SIGKILL');
      await gone(5_000);
    }
    // No orphans: the server's own children share its group.
    if (groupAlive(pid)) signalGroup(pid, 'SIGKILL');
    if (child && child.exitCode === null && child.signalCode === null)
      await new Promise((r) => {
        child.once('exit', r);
        setTimeout(r, 2000);
      });
    if (this.child === child) this.child = null;
    this.pid = null;
    removeFile(this.pidFile);
  }

  // ------------------------------------------------------------------ monitoring and recovery

  startMonitor(): void {
    if (this.monitorDone !== null) return;
    this.monitorDone = this.monitorLoop();
  }

  private wakeMonitor(): void {
    this.monitorWake?.();
  }

  private async monitorLoop(): Promise<void> {
    while (!this.closed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.deps.timings.quickIntervalMs);
        this.monitorWake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.monitorWake = null;
      if (this.closed) break;
      if (this.busy > 0 || (this.state !== 'running' && this.state !== 'degraded')) continue;
      try {
        await this.checkOnce();
      } catch (err) {
        this.deps.log.warn({ err }, 'check loop error');
      }
    }
  }

  private async checkOnce(): Promise<void> {
    const t = this.deps.timings;
    const quick = await this.quickCheck();
    if (this.busy > 0 || this.closed) return;
    if (!this.isRunning()) return this.fail('the app server process is gone', true);
    if (quick.result !== 'ok') return this.fail(`quick check: ${quick.status ?? quick.error}`, false, 'quick');
    this.consecutive.quick = 0;
    this.noteDatabase(quick);
    if (Date.now() - this.lastDeep >= t.deepIntervalMs) {
      this.lastDeep = Date.now();
      const deep = await this.deepCheck();
      if (this.busy > 0 || this.closed) return;
      // Within OMFLOW_DB_OUTAGE_GRACE_MS the server answers 200 anyway; after it, 503 with this code.
      if (deep.result !== 'ok' && this.noteDatabase(deep) && this.databaseDownForAgentToo()) {
        this.consecutive.deep = 0;
        this.waitingForDatabase = true;
        const downS = Math.round(Number(deep.body?.dbDownMs ?? 0) / 1000);
        this.transition('degraded', `database unreachable for ${downS} s; the server reconnects by itself (no restart)`);
        return;
      }
      this.waitingForDatabase = false;
      if (deep.result !== 'ok') return this.fail(`deep check: ${deep.status ?? deep.error}`, false, 'deep');
      this.consecutive.deep = 0;
    }
    // Degraded for the database stays so until a deep check passes again.
    if (this.state === 'degraded' && !this.waitingForDatabase) this.transition('running', this.version ?? undefined);
  }

  /**
   * True unless the agent itself reaches the database: then the server's own connection is at
   * fault, and a restart is today's answer. The quick checks have told the agent's monitor
   * long before the grace ends, so its probe has settled by then. Without a monitor the
   * server's word is taken.
   */
  private databaseDownForAgentToo(): boolean {
    return this.deps.database ? !this.deps.database.isUp() : true;
  }

  private async fail(detail: string, dead: boolean, kind?: 'quick' | 'deep'): Promise<void> {
    if (kind) this.consecutive[kind]++;
    const n = kind ? this.consecutive[kind] : this.deps.timings.failureThreshold;
    if (!dead && n < this.deps.timings.failureThreshold) {
      this.transition('degraded', `${detail} (${n}/${this.deps.timings.failureThreshold})`);
      return;
    }
    await this.exclusive(() => this.recover(detail));
  }

  private backoff(attempt: number): number {
    const t = this.deps.timings;
    const base = Math.min(t.backoffMaxMs, t.backoffMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(base * (0.5 + (this.deps.random ?? Math.random)() * 0.5));
  }

  /** Restart with backoff until start succeeds; too many recoveries in the window → failed. */
  private async recover(reason: string): Promise<void> {
    const t = this.deps.timings;
    while (!this.closed) {
      const now = Date.now();
      this.recoveries = this.recoveries.filter((x) => now - x < t.recoveryWindowMs);
      if (this.recoveries.length >= t.maxRecoveries) {
        this.deps.log.error(
          { reason, recoveries: this.recoveries.length, windowMs: t.recoveryWindowMs },
          'app server keeps failing; node marked failed until an operator restarts it',
        );
        await this.stopProcess().catch(() => undefined);
        this.transition('failed', `${this.recoveries.length} recoveries within ${t.recoveryWindowMs} ms; last: ${reason}`);
        return;
      }
      this.recoveries.push(now);
      const delay = this.backoff(this.recoveries.length);
      this.transition('recovering', `${reason}; restart ${this.recoveries.length} in ${delay} ms`);
      this.deps.log.warn({ reason, delay, attempt: this.recoveries.length }, 'recovering the app server');
      await this.stopProcess().catch((err) => this.deps.log.warn({ err }, 'stop during recovery failed'));
      await sleep(delay);
      if (this.closed) return;
      try {
        await this.startInternal();
        this.transition('running', this.version ?? undefined);
        return;
      } catch (err) {
        reason = isOmflowError(err) ? err.code : String(err);
      }
    }
  }

  /** Operator action (control API): leave 'failed' and try again with a clean slate. */
  restart(): Promise<void> {
    return this.exclusive(async () => {
      this.recoveries = [];
      this.consecutive = { quick: 0, deep: 0 };
      const wasFailed = this.state === 'failed';
      if (this.isRunning()) await this.stopInternal({ drain: true, reason: 'operator restart' });
      if (wasFailed) this.transition('starting', 'operator restart');
      try {
        await this.startInternal();
        await this.deps.undrain().catch(() => undefined);
      } catch (err) {
        await this.recover(isOmflowError(err) ? err.code : String(err));
      }
    });
  }

  /** The first start failed (agent start-up): go through recovery like any later failure. */
  restartAfterFailedStart(err: unknown): Promise<void> {
    return this.exclusive(() => this.recover(isOmflowError(err) ? err.code : String(err)));
  }

  /** Marks the resource as being patched (reported to the boosters; monitoring pauses). */
  setPatching(on: boolean, detail?: string): void {
    if (on) this.transition('patching', detail);
    else this.transition(this.isRunning() ? 'running' : 'stopped', this.version ?? undefined);
  }

  /** Stops monitoring; with `stopServer`, stops the server gracefully too. */
  async close(opts: { stopServer: boolean }): Promise<void> {
    if (opts.stopServer) await this.stop({ drain: true, reason: 'agent shutdown' }).catch((err) => this.deps.log.warn({ err }, 'stop failed'));
    this.closed = true;
    this.wakeMonitor();
    await this.monitorDone;
  }
}
