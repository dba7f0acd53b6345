import { existsSync, mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { boosterUrlsOf } from '../common/config/areas/boosters.js';
import { agentArea, boostersArea, clusterArea, databaseArea, serverArea } from '../common/config/areas/index.js';
import { assignReloadable, type ConfigChanges, diffConfig, type LoadedConfig } from '../common/config/load.js';
import { reportReload } from '../common/config/reload-signal.js';
import { createDatabase, type Database } from '../common/db/create-database.js';
import { freePort } from '../common/free-port.js';
import type { Logger } from '../common/log.js';
import { packageVersion } from '../common/package-version.js';
import { limitsFromConfig, trustedKeysFromConfig } from '../common/patch/index.js';
import { audiencesFor } from '../common/protocol/cluster-auth.js';
import { createClusterClient } from '../common/protocol/cluster-client.js';
import { SERVER_PATH } from '../common/protocol/headers.js';
import type { AgentState } from '../common/protocol/messages.js';
import { BoosterClient } from './booster-client.js';
import { buildControlApi, listenControlApi } from './control-api.js';
import { AgentErrors } from './errors.js';
import { createAgentMetrics } from './metrics.js';
import { cmdlineOf, isAlive, readJsonFile, removeFile, writeJsonFile } from './process-control.js';
import { ReleaseStore } from './releases.js';
import { RolloutWorker } from './rollout-worker.js';
import { Supervisor } from './supervisor.js';

export const AGENT_AREAS = [clusterArea, databaseArea, boostersArea, serverArea, agentArea] as const;
export type AgentConfig = LoadedConfig<typeof AGENT_AREAS>;

/** The install this agent runs from (agent/.. ): the source of the bootstrap release and of node_modules. */
export const INSTALL_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface AgentOptions {
  config: AgentConfig;
  /** Environment handed to the server (the agent's own; the server reads its config from it). */
  env: Record<string, string | undefined>;
  log: Logger;
  installRoot?: string;
  db?: Database;
}

export interface AgentStatus {
  nodeId: string;
  agentUrl: string;
  serverUrl: string;
  state: AgentState;
  detail: string | null;
  pid: number | null;
  version: string | null;
  sequence: number | null;
  releases: { version: string; sequence: number }[];
  drainedByAgent: boolean;
  rolloutError: string | null;
}

/** Composition root of the agent: db → releases → supervisor → rollout worker → control API. */
export class Agent {
  readonly releases: ReleaseStore;
  supervisor!: Supervisor;
  worker!: RolloutWorker;
  readonly boosters: BoosterClient;
  private db: Database;
  private api: Server | null = null;
  private reportTimer: NodeJS.Timeout | null = null;
  private url = '';
  private serverPort = 0;
  private readonly agentPidFile: string;
  private readonly drainedFile: string;
  /** The settings as last applied (a reload changes the reloadable ones). */
  private current: AgentConfig;
  /** The supervisor's timings, read at each use: a reload changes them in place. */
  private readonly timings: ReturnType<typeof supervisorTimings>;

  constructor(private readonly opts: AgentOptions) {
    const c = opts.config;
    this.releases = new ReleaseStore(c.cluster.dataDir, { keep: c.agent.releasesKeep, nodeModules: join(opts.installRoot ?? INSTALL_ROOT, 'node_modules') });
    this.boosters = new BoosterClient(boosterUrlsOf(c.boosters), { secret: c.cluster.secret, nodeId: c.cluster.nodeId }, opts.log);
    // The agent's own view of the database: one log line per outage, and the restart rule of ADR 0009.
    this.db = opts.db ?? createDatabase(c.database, { log: opts.log, availability: true });
    this.agentPidFile = join(c.cluster.dataDir, 'agent.pid');
    this.drainedFile = join(c.cluster.dataDir, 'drained-by-agent');
    this.current = c;
    this.timings = supervisorTimings(c.agent);
  }

  get agentUrl(): string {
    return this.url;
  }

  private serverUrl(): string {
    const s = this.opts.config.server;
    return s.publicUrl ?? `http://${s.host === '0.0.0.0' ? hostname() : s.host}:${this.serverPort}`;
  }

  async start(): Promise<void> {
    const { config: c, log } = this.opts;
    mkdirSync(c.cluster.dataDir, { recursive: true });
    // One agent per data directory.
    const other = readJsonFile<{ pid: number }>(this.agentPidFile);
    if (other && other.pid !== process.pid && isAlive(other.pid) && (cmdlineOf(other.pid)?.includes('agent') ?? true))
      throw AgentErrors.AGENT_ERR_ALREADY_RUNNING(`agent pid ${other.pid} already runs on ${c.cluster.dataDir}`, { pid: other.pid });
    writeJsonFile(this.agentPidFile, { pid: process.pid });

    this.releases.prepare();
    const src = c.agent.bootstrapDir ?? this.opts.installRoot ?? INSTALL_ROOT;
    if (!this.releases.currentVersion()) {
      const meta = this.releases.bootstrap(src);
      log.info({ version: meta.version, from: src }, 'bootstrapped the first release from the installed code');
    } else {
      const refreshed = this.releases.refreshBootstrap(src);
      if (refreshed) log.info({ version: refreshed.version, from: src }, 'installed code changed and no patch was applied yet: bootstrap release refreshed');
    }
    this.serverPort = c.server.port || (await freePort(c.server.host === '0.0.0.0' ? '127.0.0.1' : c.server.host));

    // Calls signed for another receiver (a booster, another agent) are refused; known once listening.
    let audiences: string[] | undefined;
    const metrics = createAgentMetrics({
      node: c.cluster.nodeId,
      version: packageVersion(null),
      status: () => this.status(),
      recentRecoveries: () => this.supervisor?.status().recentRecoveries ?? 0,
    });
    this.api = buildControlApi({
      secret: c.cluster.secret,
      log,
      operatorToken: () => this.current.server.operatorToken,
      audiences: () => (this.url ? (audiences ??= audiencesFor([this.url])) : undefined),
      handlers: {
        status: () => this.status(),
        drain: async () => ({ boosters: await this.drain('operator') }),
        undrain: async () => ({ boosters: await this.undrain() }),
        restart: async () => {
          void this.supervisor.restart().catch((err) => log.warn({ err }, 'restart failed'));
          return { accepted: true };
        },
        patchNotice: (notice) => {
          log.info({ notice }, 'patch notice');
          this.worker.notify();
          return { accepted: true };
        },
        metrics: async () => ({ contentType: metrics.contentType, body: await metrics.metrics() }),
      },
    });
    const port = await listenControlApi(this.api, c.agent.host, c.agent.port);
    const host = c.agent.host === '0.0.0.0' || c.agent.host === '::' ? (c.server.host !== '0.0.0.0' ? c.server.host : hostname()) : c.agent.host;
    this.url = c.server.agentUrl ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    writeJsonFile(join(c.cluster.dataDir, 'agent.json'), { pid: process.pid, url: this.url, nodeId: c.cluster.nodeId });

    const a = c.agent;
    this.supervisor = new Supervisor({
      dataDir: c.cluster.dataDir,
      releases: this.releases,
      server: { host: c.server.host, port: this.serverPort, publicUrl: this.serverUrl() },
      env: { ...this.opts.env, OMFLOW_NODE_ID: c.cluster.nodeId },
      agentUrl: () => this.url,
      timings: this.timings,
      log,
      drain: async (reason) => void (await this.drain(reason)),
      undrain: async () => void (await this.undrain()),
      onTransition: () => void this.report(),
      database: this.db.availability,
    });
    this.worker = new RolloutWorker({
      db: this.db,
      nodeId: c.cluster.nodeId,
      releases: this.releases,
      supervisor: this.supervisor,
      trusted: trustedKeysFromConfig(a),
      limits: limitsFromConfig(a),
      undrain: async () => void (await this.undrain()),
      log,
      timings: rolloutTimings(a),
    });

    this.reportTimer = setInterval(() => void this.report(), a.reportIntervalMs);
    await this.supervisor.replaceLeftover();
    try {
      await this.supervisor.start();
    } catch (err) {
      log.warn({ err }, 'app server did not start; recovering');
      await this.supervisor.restartAfterFailedStart(err);
    }
    if (existsSync(this.drainedFile) && this.supervisor.isRunning()) await this.undrain();
    this.supervisor.startMonitor();
    this.worker.start();
    log.info({ agentUrl: this.url, serverUrl: this.serverUrl(), state: this.supervisor.currentState }, 'agent started');
  }

  /**
   * A configuration read again (SIGHUP): the keys marked reloadable apply in place (trusted patch
   * keys, patch limits, check and recovery timings, the report interval, the log level); the
   * others are reported as needing a restart. A trusted key that cannot be read throws, and
   * nothing changes.
   */
  reload(next: AgentConfig): ConfigChanges {
    const { log } = this.opts;
    const changes = diffConfig(AGENT_AREAS, this.current, next);
    const agent = { ...this.current.agent };
    assignReloadable(agentArea, agent, next.agent);
    const trusted = trustedKeysFromConfig(agent);
    const cluster = { ...this.current.cluster };
    assignReloadable(clusterArea, cluster, next.cluster);
    const server = { ...this.current.server };
    assignReloadable(serverArea, server, next.server);
    Object.assign(this.timings, supervisorTimings(agent));
    this.worker?.reconfigure({ trusted, limits: limitsFromConfig(agent), timings: rolloutTimings(agent) });
    if (agent.reportIntervalMs !== this.current.agent.reportIntervalMs && this.reportTimer) {
      clearInterval(this.reportTimer);
      this.reportTimer = setInterval(() => void this.report(), agent.reportIntervalMs);
    }
    this.current = { ...this.current, agent, cluster, server };
    void this.reloadServer();
    reportReload(log, changes, cluster.logLevel);
    return changes;
  }

  /** The app server reads the same file: it is asked (signed) to read its reloadable settings again; one that cannot (an older release) keeps its own. */
  private async reloadServer(): Promise<void> {
    if (!this.supervisor?.isRunning()) return;
    const c = this.opts.config.cluster;
    const r = await createClusterClient({ secret: c.secret, nodeId: c.nodeId }).call(this.serverUrl(), 'POST', SERVER_PATH.reload, '{}');
    if (!r.ok)
      this.opts.log.warn({ status: r.status, error: r.error ?? r.body }, 'the app server did not read its configuration again; it applies on its next start');
  }

  async drain(reason: string) {
    writeJsonFile(this.drainedFile, { reason, at: new Date().toISOString() });
    return this.boosters.drain(reason);
  }

  async undrain() {
    const r = await this.boosters.undrain();
    removeFile(this.drainedFile);
    return r;
  }

  async report(): Promise<void> {
    if (!this.supervisor || !this.url) return;
    const s = this.supervisor.status();
    await this.boosters
      .report({
        nodeId: this.opts.config.cluster.nodeId,
        agentUrl: this.url,
        state: s.state,
        version: s.version ?? this.releases.currentVersion(),
        detail: s.detail ?? undefined,
      })
      .catch(() => undefined);
  }

  status(): AgentStatus {
    const s = this.supervisor?.status();
    const cur = this.releases.current();
    return {
      nodeId: this.opts.config.cluster.nodeId,
      agentUrl: this.url,
      serverUrl: this.serverUrl(),
      state: s?.state ?? 'stopped',
      detail: s?.detail ?? null,
      pid: s?.pid ?? null,
      version: s?.version ?? cur?.version ?? null,
      sequence: cur?.sequence ?? null,
      releases: this.releases.list().map((r) => ({ version: r.version, sequence: r.sequence })),
      drainedByAgent: existsSync(this.drainedFile),
      rolloutError: this.worker?.lastError ?? null,
    };
  }

  /** Agent shutdown (SIGTERM): rollout worker first, then the server gracefully, then the API. */
  async close(opts: { stopServer?: boolean } = {}): Promise<void> {
    const stopServer = opts.stopServer ?? true;
    await this.worker?.close();
    await this.supervisor?.close({ stopServer });
    if (this.reportTimer) clearInterval(this.reportTimer);
    await this.report();
    await new Promise<void>((r) => (this.api ? this.api.close(() => r()) : r()));
    this.api?.closeAllConnections?.();
    if (readJsonFile<{ pid: number }>(this.agentPidFile)?.pid === process.pid) removeFile(this.agentPidFile);
    if (!this.opts.db) await this.db.destroy();
  }
}

/** The supervisor's checks and recovery timings, from the agent's settings. */
function supervisorTimings(a: AgentConfig['agent']) {
  return {
    startTimeoutMs: a.startTimeoutMs,
    stopTimeoutMs: a.stopTimeoutMs,
    drainTimeoutMs: a.drainTimeoutMs,
    drainSettleMs: a.drainSettleMs,
    quickIntervalMs: a.quickIntervalMs,
    quickTimeoutMs: a.quickTimeoutMs,
    deepIntervalMs: a.deepIntervalMs,
    deepTimeoutMs: a.deepTimeoutMs,
    failureThreshold: a.failureThreshold,
    backoffMs: a.backoffMs,
    backoffMaxMs: a.backoffMaxMs,
    maxRecoveries: a.maxRecoveries,
    recoveryWindowMs: a.recoveryWindowMs,
  };
}

function rolloutTimings(a: AgentConfig['agent']) {
  return { pollMs: a.patchPollMs, soakMs: a.soakMs, lockTtlMs: a.rolloutLockTtlMs, deepIntervalMs: a.deepIntervalMs };
}
