import type { CliContext } from '../../common/cli/context.js';
import { parseFlags } from '../../common/cli/context.js';
import { boosterArea } from '../../common/config/areas/booster.js';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { databaseArea } from '../../common/config/areas/database.js';
import { configOrigin, loadConfig } from '../../common/config/load.js';
import { reloadOnSighup } from '../../common/config/reload-signal.js';
import { createDatabase } from '../../common/db/create-database.js';
import { createLogger } from '../../common/log.js';
import { packageVersion } from '../../common/package-version.js';
import { createServiceNotifier } from '../../common/systemd-notify.js';
import { createBooster } from '../booster.js';
import { createLicenseGate } from '../license/gate.js';

const HELP = `Usage: omflow booster

Runs a Booster: the load balancer and step dispatcher of the cluster, active or standby.
Listens on OMFLOW_BOOSTER_HOST:OMFLOW_BOOSTER_PORT (default 0.0.0.0:5169). Configuration:
the "Cluster", "Database" and "Booster" sections of docs/configuration.md. Stops gracefully
on SIGTERM/SIGINT (hands the lease to the standby, finishes in-flight requests). On SIGHUP
(systemctl reload) it reads --config FILE again and applies the settings marked "Applies on
reload" in place; SIGUSR1 reopens the access-log file.
`;

const AREAS = [clusterArea, databaseArea, boosterArea] as const;

/** `omflow booster`: the only place that turns the environment into a running booster. */
export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags } = parseFlags(argv, ['help']);
  if (flags.help) {
    ctx.stdout.write(HELP);
    return 0;
  }
  const origin = configOrigin({ env: ctx.env, file: ctx.configFile });
  const config = loadConfig(AREAS, origin.sources);
  const log = createLogger({ name: 'booster', level: config.cluster.logLevel, nodeId: config.cluster.nodeId });
  const db = createDatabase(config.database);
  const licenseGate = createLicenseGate({ db, log, nodeId: config.cluster.nodeId });
  const booster = createBooster({ config, db, log, licenseGate, version: packageVersion(undefined) });
  // Under systemd (Type=notify): ready once listening with a role, the role as its status.
  const systemd = createServiceNotifier({ env: ctx.env, log });
  const describe = () => (booster.role() === 'active' ? `active, epoch ${booster.epoch()}` : booster.role());
  // SIGUSR1 (logrotate's postrotate) reopens the access-log file through the access log's own
  // listener; this one only keeps Node from opening its inspector when the access log is off.
  const ignoreUsr1 = () => {};
  process.on('SIGUSR1', ignoreUsr1);
  const stopReloading = reloadOnSighup(AREAS, origin, log, (next) => booster.reload(next));
  try {
    // A start that fails (the database unreachable) must end the process, not leave its listener
    // holding it open: systemd restarts it, and the next start may find the database.
    await booster.listen().catch(async (err: unknown) => {
      await booster.close().catch((closeErr: unknown) => log.warn({ err: closeErr }, 'closing after a failed start failed'));
      throw err;
    });
    systemd.ready(describe());
    systemd.follow(describe);
    const sig = await ctx.stopSignal;
    log.info({ signal: sig }, 'stopping');
    // Workers finish their requests for up to 35 s before the lease and the pools are released.
    systemd.stopping(50_000);
    await booster.close();
    return 0;
  } finally {
    stopReloading();
    process.off('SIGUSR1', ignoreUsr1);
    systemd.close();
    await db.destroy();
  }
}
