import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import Fastify, { type FastifyInstance } from 'fastify';
import { boosterUrlsOf } from '../common/config/areas/boosters.js';
import { LOG_LEVELS } from '../common/config/areas/cluster.js';
import { serverArea } from '../common/config/areas/server.js';
import { assignReloadable, diffConfig } from '../common/config/load.js';
import { reportReload } from '../common/config/reload-signal.js';
import { levelFor } from '../common/db/availability.js';
import { createDatabase, type Database } from '../common/db/create-database.js';
import { createLogger, type Logger } from '../common/log.js';
import { audiencesFor } from '../common/protocol/cluster-auth.js';
import { EpochFence } from '../common/protocol/epoch.js';
import { HEADER, SERVER_PATH } from '../common/protocol/headers.js';
import { releaseAllSteps } from '../common/protocol/steps.js';
import { SERVER_AREAS, type ServerConfig } from './config.js';
import { createDbPressureSampler } from './db-pressure.js';
import { ServerErrors } from './errors.js';
import { type AdminFeatureOptions, adminFeature } from './features/admin/index.js';
import { formsPages } from './features/flows/pages.js';
import { flowsRoutes } from './features/flows/routes.js';
import { createFlowsService } from './features/flows/service.js';
import { createFlowsStore } from './features/flows/store.js';
import { formsRoutes } from './features/forms/routes.js';
import { createFormsService } from './features/forms/service.js';
import { createFormsStore } from './features/forms/store.js';
import { healthRoutes } from './features/health/routes.js';
import { metricsRoutes } from './features/metrics/routes.js';
import { createSettingsStore, SETTING } from './features/settings/store.js';
import { createLocalDispatcher } from './features/steps/dispatcher.js';
import { stepsRoutes } from './features/steps/routes.js';
import { createStepRunner } from './features/steps/runner.js';
import { ensureTicketSequence } from './features/tickets/numbering.js';
import { ticketsPages } from './features/tickets/pages.js';
import { ticketsRoutes } from './features/tickets/routes.js';
import { createTicketsService } from './features/tickets/service.js';
import { createTicketsStore } from './features/tickets/store.js';
import { registerAuthHook } from './features/users/auth-hook.js';
import { usersPages } from './features/users/pages.js';
import { createPasswordHasher } from './features/users/passwords.js';
import { usersRoutes } from './features/users/routes.js';
import { createUsersService } from './features/users/service.js';
import { createUsersStore } from './features/users/store.js';
import { createHeartbeat } from './heartbeat.js';
import { registerErrorHandling, sendOmflowError } from './http/errors.js';
import { purgeIdempotencyKeys } from './http/idempotency.js';
import { registerSecurityHeaders } from './http/security-headers.js';
import { createServerMetrics } from './metrics.js';
import { openapiRoutes } from './openapi.js';
import { Runtime } from './runtime.js';
import { createStepsReadyHint } from './steps-ready-hint.js';
import type { ServerDeps } from './types.js';
import { packageVersion } from './version.js';
import { assetsRoutes } from './web/assets.js';

export interface BuildOptions {
  config: ServerConfig;
  /** Given by tests; otherwise created from config.database and destroyed on close. */
  db?: Database;
  log?: Logger;
  fence?: EpochFence;
  /** Test-only admin options (e.g. an injected license verifier); never an operator setting. */
  admin?: Omit<AdminFeatureOptions, 'deps'>;
  /** Run the built-in step dispatcher. Default: only when no booster is configured. */
  localDispatcher?: boolean;
  /** For tests: the fetch used by http steps and heartbeats. */
  fetchImpl?: typeof fetch;
  /** Reads the configuration again (its agent's `systemctl reload`); throws when it is invalid. */
  reloadConfig?: () => ServerConfig;
}

export interface ServerHandle {
  deps: ServerDeps;
  runtime: Runtime;
  /** Starts heartbeats (reporting `url`), the built-in dispatcher (if any) and housekeeping; call after listen. */
  startBackground(url: string): void;
  /**
   * Graceful stop: draining (reported at once), stop accepting, finish in-flight requests and
   * running steps up to `timeoutMs`, give back step leases, close the database. Idempotent.
   */
  shutdown(timeoutMs?: number): Promise<void>;
  /** Every route registered (method, url), e.g. to check the OpenAPI document covers /api. */
  routes: Array<{ method: string; url: string }>;
}

declare module 'fastify' {
  interface FastifyInstance {
    omflow: ServerHandle;
  }
}

/**
 * The composition root: database → stores → services → routes. Builds the fastify app
 * without listening (tests use app.inject or listen on port 0; server/cli.ts listens).
 */
export async function buildServer(opts: BuildOptions): Promise<FastifyInstance> {
  const { config } = opts;
  const log = opts.log ?? createLogger({ name: 'server', level: config.cluster.logLevel, nodeId: config.cluster.nodeId });
  const ownsDb = !opts.db;
  // The server watches the database's reachability: fast 503s during an outage, /readyz grace.
  const db = opts.db ?? createDatabase(config.database, { log, availability: true });
  const nodeId = config.cluster.nodeId;
  const fence = opts.fence ?? new EpochFence();
  const settings = createSettingsStore(db.knex);
  const runtime = new Runtime(nodeId, config.server.version ?? packageVersion(), config.server.stepConcurrency);
  const deps: ServerDeps = {
    config,
    db,
    log,
    nodeId,
    boosterUrls: boosterUrlsOf(config.boosters),
    clusterSecret: config.cluster.secret,
    fence,
    settings,
  };

  // request.id is the booster's X-Request-ID (the access log's requestId), so a log line here matches the booster's.
  const app = Fastify({
    logger: false,
    bodyLimit: config.server.bodyLimit,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    requestIdHeader: HEADER.requestId,
  });
  const metrics = createServerMetrics({ node: nodeId, version: runtime.version, runtime, knex: db.knex, availability: db.availability });
  /** The settings as last read: a reload changes the reloadable ones (the metrics token). */
  let live = config;
  registerErrorHandling(app, log);
  const routes: ServerHandle['routes'] = [];
  app.addHook('onRoute', (r) => {
    for (const method of ([] as string[]).concat(r.method)) if (method !== 'HEAD') routes.push({ method, url: r.url });
  });
  await app.register(formbody);
  await app.register(cookie);
  await registerSecurityHeaders(app, { alwaysTls: config.server.cookieSecure });

  // In-flight count for the load report; epoch fencing of everything a booster proxies. The
  // fence is raised only by signed sources (dispatches, heartbeat replies), never by this header.
  app.addHook('onRequest', async (request, reply) => {
    runtime.inflight++;
    const epoch = EpochFence.parseHeader(request.headers[HEADER.epoch]);
    if (epoch !== undefined && !request.url.startsWith(SERVER_PATH.internalPrefix) && fence.isStale(epoch)) {
      reply.header(HEADER.staleEpoch, String(fence.highest));
      return sendOmflowError(reply, ServerErrors.SERVER_ERR_STALE_EPOCH(undefined, { epoch, highest: fence.highest }));
    }
  });
  app.addHook('onResponse', async (_request, reply) => {
    runtime.inflight--;
    metrics.observe(reply.statusCode, reply.elapsedTime / 1000);
  });

  const usersStore = createUsersStore(db.knex);
  const users = createUsersService({ store: usersStore, settings, passwords: createPasswordHasher({ concurrency: config.server.passwordHashes }) });
  registerAuthHook(app, users);

  const formsStore = createFormsStore(db.knex);
  const flowsStore = createFlowsStore(db.knex);
  const ticketsStore = createTicketsStore(db.knex);
  const forms = createFormsService({ store: formsStore, flows: flowsStore });
  const flows = createFlowsService({ store: flowsStore, ensureTicketPrefix: (prefix) => ensureTicketSequence(db.knex, prefix) });
  const tickets = createTicketsService({ store: ticketsStore, forms: formsStore, flows: flowsStore, users: usersStore, nodeId });

  const useLocalDispatcher = opts.localDispatcher ?? deps.boosterUrls.length === 0;
  let kick = () => {};
  const runner = createStepRunner({
    db,
    log,
    nodeId,
    runtime,
    flows: flowsStore,
    tickets: ticketsStore,
    onCommitted: () => kick(),
    onFinished: () => heartbeat?.soon(),
    fetchImpl: opts.fetchImpl,
  });
  const dispatcher = useLocalDispatcher
    ? createLocalDispatcher({ db, log, nodeId, runtime, runner, leaseMs: config.server.stepLeaseMs, pollMs: config.server.dispatchPollMs })
    : null;
  if (dispatcher) kick = () => dispatcher.kick();
  else kick = createStepsReadyHint({ boosterUrls: deps.boosterUrls, secret: config.cluster.secret, nodeId, log });
  const onCommitted = () => kick();

  await app.register(assetsRoutes);
  await app.register(healthRoutes, { db, runtime, timeoutMs: config.server.readyTimeoutMs });
  await app.register(metricsRoutes, {
    secret: config.cluster.secret,
    registry: metrics.registry,
    operatorToken: () => live.server.operatorToken,
    audiences: () => dispatchAudiences,
    reload: opts.reloadConfig
      ? async () => {
          const next = opts.reloadConfig!();
          const changes = diffConfig(SERVER_AREAS, live, next);
          const server = { ...live.server };
          assignReloadable(serverArea, server, next.server);
          live = { ...live, server };
          // The log level stays the admin page's (settings, applied every few seconds).
          reportReload(log, changes, log.level);
          return changes;
        }
      : undefined,
  });
  // The URL boosters dial (the heartbeat's url) is known once listening: dispatches must be signed for it.
  let dispatchAudiences: string[] | undefined;
  await app.register(stepsRoutes, { db, secret: config.cluster.secret, nodeId, fence, runtime, runner, audiences: () => dispatchAudiences });
  await app.register(usersRoutes, { db, users, store: usersStore });
  await app.register(usersPages, { users, store: usersStore, cookieSecure: config.server.cookieSecure });
  await app.register(formsRoutes, { db, forms, store: formsStore, flows: flowsStore });
  await app.register(flowsRoutes, { db, flows, store: flowsStore });
  await app.register(ticketsRoutes, { db, tickets, forms: formsStore, onCommitted });
  await app.register(ticketsPages, { db, tickets, forms: formsStore, users: usersStore, onCommitted });
  await app.register(formsPages, { db, forms, flows, formsStore, flowsStore });
  await app.register(openapiRoutes);
  await app.register(adminFeature, { ...opts.admin, deps });

  let heartbeat: ReturnType<typeof createHeartbeat> | null = null;
  // Reported in every heartbeat; the boosters shed new work when it climbs (admission under database pressure).
  const dbPressure = createDbPressureSampler(db.knex);
  const timers: NodeJS.Timeout[] = [];
  let shutdownPromise: Promise<void> | null = null;
  let deadline = Date.now();

  // Every server does this (idempotent): apply the log level from settings; purge expired keys and sessions.
  async function applyLogLevel(): Promise<void> {
    try {
      const level = await settings.get(SETTING.logLevel);
      if (level && (LOG_LEVELS as readonly string[]).includes(level) && level !== log.level) log.level = level;
    } catch (err) {
      log[levelFor(err)]({ err }, 'reading settings failed');
    }
  }
  async function purge(): Promise<void> {
    try {
      await purgeIdempotencyKeys(db.knex);
      await usersStore.deleteExpiredSessions();
    } catch (err) {
      log[levelFor(err)]({ err }, 'purging expired idempotency keys and sessions failed');
    }
  }

  const handle: ServerHandle = {
    deps,
    runtime,
    routes,
    startBackground(url: string) {
      dispatchAudiences = audiencesFor([config.server.publicUrl ?? url]);
      heartbeat = createHeartbeat({
        boosterUrls: deps.boosterUrls,
        secret: config.cluster.secret,
        nodeId,
        url: config.server.publicUrl ?? url,
        agentUrl: config.server.agentUrl,
        runtime,
        fence,
        knex: db.knex,
        availability: db.availability,
        log,
        intervalMs: config.server.heartbeatMs,
        dbPressure,
      });
      heartbeat.start();
      dispatcher?.start();
      timers.push(
        setInterval(() => void applyLogLevel(), 5000),
        setInterval(() => void purge(), 10 * 60_000),
      );
      for (const t of timers) t.unref();
    },
    shutdown(timeoutMs = config.server.stopTimeoutMs) {
      shutdownPromise ??= (async () => {
        deadline = Date.now() + timeoutMs;
        runtime.draining = true;
        await heartbeat?.beat().catch(() => {});
        // close(): stop accepting, finish in-flight requests, then the onClose hook below.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([app.close(), new Promise((r) => (timer = setTimeout(r, timeoutMs + 3000)))]);
        clearTimeout(timer);
      })();
      return shutdownPromise;
    },
  };
  app.decorate('omflow', handle);

  // fastify closes the listener and waits for in-flight requests before onClose hooks run.
  app.addHook('onClose', async () => {
    runtime.draining = true;
    for (const t of timers) clearInterval(t);
    await dispatcher?.stop();
    await runner.drain(Math.max(0, deadline - Date.now()));
    const given = await releaseAllSteps(db.knex, nodeId).catch((err) => {
      log.warn({ err }, 'giving back step leases failed; they lapse by themselves');
      return 0;
    });
    if (given) log.info({ steps: given }, 'step leases given back');
    await heartbeat?.stop(true);
    dbPressure.close();
    runtime.close();
    if (ownsDb) await db.destroy();
  });
  return app;
}
