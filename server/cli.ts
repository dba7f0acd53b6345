import { type CliContext, parseFlags } from '../common/cli/context.js';
import { databaseArea } from '../common/config/areas/index.js';
import { configOrigin, loadConfig, reloadConfig } from '../common/config/load.js';
import { createDatabase } from '../common/db/create-database.js';
import { buildServer } from './app.js';
import { SERVER_AREAS } from './config.js';
import { seed } from './seed.js';

const USAGE = `Usage:
  omflow server                       run an app server (config: docs/configuration.md)
  omflow server seed --admin-user NAME --admin-password PASS [--demo]
                                      create or reset the admin account; --demo adds the it-request form (REQ flow)
  omflow server drain|undrain|weight|retire ID …
                                      operator commands on a server, through the boosters (omflow server drain --help)
`;

/** `omflow server` and `omflow server seed`. */
export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags(argv, ['demo', 'help']);
  if (flags.help) {
    ctx.stdout.write(USAGE);
    return 0;
  }
  if (positionals[0] === 'seed') return runSeed(flags, ctx);
  if (positionals.length) {
    ctx.stderr.write(USAGE);
    return 2;
  }
  const origin = configOrigin({ env: ctx.env, file: ctx.configFile });
  const config = loadConfig(SERVER_AREAS, origin.sources);
  // Its agent asks it to read the file again on `systemctl reload` (POST /_internal/reload).
  const app = await buildServer({ config, reloadConfig: () => reloadConfig(SERVER_AREAS, origin) });
  const { log } = app.omflow.deps;
  try {
    await app.listen({ host: config.server.host, port: config.server.port });
  } catch (err) {
    log.error({ err, host: config.server.host, port: config.server.port }, 'cannot listen');
    await app.close();
    return 1;
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.server.port;
  const host = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (!config.server.publicUrl && host !== config.server.host && app.omflow.deps.boosterUrls.length)
    log.warn({ reported: url }, 'OMFLOW_SERVER_URL is not set and the server listens on every address: boosters on other hosts cannot reach the reported URL');
  app.omflow.startBackground(url);
  log.info({ url, boosters: app.omflow.deps.boosterUrls, version: app.omflow.runtime.version }, 'app server started');
  ctx.stdout.write(`omflow server ${config.cluster.nodeId} listening on ${url}\n`);
  const signal = await ctx.stopSignal;
  log.info({ signal }, 'stopping: draining, finishing in-flight work, giving back step leases');
  await app.omflow.shutdown();
  log.info('stopped');
  return 0;
}

async function runSeed(flags: Record<string, string | true>, ctx: CliContext): Promise<number> {
  const user = flags['admin-user'];
  const password = flags['admin-password'];
  if (typeof user !== 'string' || typeof password !== 'string') {
    ctx.stderr.write(USAGE);
    return 2;
  }
  const config = loadConfig([databaseArea], { env: ctx.env, file: ctx.configFile });
  const db = createDatabase(config.database);
  try {
    for (const line of await seed(db, { adminUser: user, adminPassword: password, demo: flags.demo === true })) ctx.stdout.write(`seeded ${line}\n`);
    return 0;
  } finally {
    await db.destroy();
  }
}
