import Fastify, { type FastifyInstance } from 'fastify';
import formbody from '@fastify/formbody';
import { createDatabase, type Database } from '../common/db/create-database.js';
import { createLogger, type Logger } from '../common/log.js';
import { EpochFence } from '../common/protocol/epoch.js';
import { HEADER, SERVER_PATH } from '../common/protocol/headers.js';
import { boosterUrlsOf } from '../common/config/areas/boosters.js';
import type { ServerConfig } from './config.js';
import { ServerErrors } from './errors.js';
import { registerErrorHandling, sendOmflowError } from './http/errors.js';
import { Runtime } from './runtime.js';
import type { ServerDeps } from './types.js';
import { packageVersion } from './version.js';
import { adminFeature } from './features/admin/index.js';
import { createSettingsStore } from './features/settings/store.js';
import { createUsersStore } from './features/users/store.js';
import { createUsersService } from './features/users/service.js';
import { registerAuthHook } from './features/users/auth-hook.js';
import { usersRoutes } from './features/users/routes.js';
import { usersPages } from './features/users/pages.js';
import { healthRoutes } from './features/health/routes.js';

export interface BuildOptions {
  config: ServerConfig;
  /** Given by tests; otherwise created from config.database and destroyed on close. */
  db?: Database;
  log?: Logger;
  fence?: EpochFence;
}

export interface ServerHandle {
  deps: ServerDeps;
  runtime: Runtime;
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
  const db = opts.db ?? createDatabase(config.database);
  const nodeId = config.cluster.nodeId;
  const fence = opts.fence ?? new EpochFence();
  const settings = createSettingsStore(db.knex);
  const runtime = new Runtime(nodeId, config.server.version ?? packageVersion(), config.server.stepConcurrency);
  const deps: ServerDeps = {
    config, db, log, nodeId, boosterUrls: boosterUrlsOf(config.boosters), clusterSecret: config.cluster.secret, fence, settings,
  };

  const app = Fastify({ logger: false, bodyLimit: config.server.bodyLimit, return503OnClosing: true, forceCloseConnections: 'idle' });
  app.decorate('omflow', { deps, runtime });
  registerErrorHandling(app, log);
  await app.register(formbody);

  // In-flight count for the load report; epoch fencing of everything a booster proxies.
  app.addHook('onRequest', async (request, reply) => {
    runtime.inflight++;
    const epoch = EpochFence.parseHeader(request.headers[HEADER.epoch]);
    if (epoch !== undefined && !request.url.startsWith(SERVER_PATH.internalPrefix) && !fence.admit(epoch)) {
      return sendOmflowError(reply, ServerErrors.SERVER_ERR_STALE_EPOCH(undefined, { epoch, highest: fence.highest }));
    }
  });
  app.addHook('onResponse', async () => {
    runtime.inflight--;
  });

  const usersStore = createUsersStore(db.knex);
  const users = createUsersService({ store: usersStore, settings });
  registerAuthHook(app, users);

  await app.register(healthRoutes, { db, runtime, timeoutMs: config.server.readyTimeoutMs });
  await app.register(usersRoutes, { users, store: usersStore });
  await app.register(usersPages, { users, store: usersStore, cookieSecure: config.server.cookieSecure });
  await app.register(adminFeature, { deps });

  app.addHook('onClose', async () => {
    runtime.close();
    if (ownsDb) await db.destroy();
  });
  return app;
}
