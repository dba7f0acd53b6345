import type { CliContext } from '../../common/cli/context.js';
import { parseFlags } from '../../common/cli/context.js';
import { boosterArea } from '../../common/config/areas/booster.js';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { databaseArea } from '../../common/config/areas/database.js';
import { loadConfig } from '../../common/config/load.js';
import { createDatabase } from '../../common/db/create-database.js';
import { createLogger } from '../../common/log.js';
import { packageVersion } from '../../common/package-version.js';
import { createBooster } from '../booster.js';
import { createLicenseGate } from '../license/gate.js';

const HELP = `Usage: omflow booster

Runs a Booster: the load balancer and step dispatcher of the cluster, active or standby.
Listens on OMFLOW_BOOSTER_HOST:OMFLOW_BOOSTER_PORT (default 0.0.0.0:5169). Configuration:
the "Cluster", "Database" and "Booster" sections of docs/configuration.md. Stops gracefully
on SIGTERM/SIGINT (hands the lease to the standby, finishes in-flight requests).
`;

/** `omflow booster`: the only place that turns the environment into a running booster. */
export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags } = parseFlags(argv, ['help']);
  if (flags.help) {
    ctx.stdout.write(HELP);
    return 0;
  }
  const config = loadConfig([clusterArea, databaseArea, boosterArea], { env: ctx.env, file: ctx.configFile });
  const log = createLogger({ name: 'booster', level: config.cluster.logLevel, nodeId: config.cluster.nodeId });
  const db = createDatabase(config.database);
  const licenseGate = createLicenseGate({ db, log, nodeId: config.cluster.nodeId });
  const booster = createBooster({ config, db, log, licenseGate, version: packageVersion(undefined) });
  try {
    await booster.listen();
    const sig = await ctx.stopSignal;
    log.info({ signal: sig }, 'stopping');
    await booster.close();
    return 0;
  } finally {
    await db.destroy();
  }
}
