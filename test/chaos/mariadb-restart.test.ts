import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ChaosCluster, startChaosCluster } from './cluster.js';
import { type MariaDbServer, mariadbMissing, startMariaDb } from './mariadb-server.js';
import { type CaseSpec, formatResult, runOutageCase } from './scenarios.js';

/**
 * Chaos, MariaDB: the same cluster and load as postgres-outages.test.ts on a MariaDB of the
 * suite's own (restarting the run's shared MariaDB would break the other MariaDB tests).
 */
const missing = mariadbMissing();

describe.skipIf(missing !== null)(`chaos: MariaDB restart under ticket load${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let maria: MariaDbServer;
  let cluster: ChaosCluster;

  beforeAll(async () => {
    maria = await startMariaDb();
    cluster = await startChaosCluster({ name: 'maria', dbUrl: maria.url });
  }, 180_000);

  afterAll(async () => {
    await cluster?.stop();
    await maria?.stop();
  }, 60_000);

  it('a restart (clean shutdown, start): no takeover, every acknowledged ticket once, steps once', async () => {
    const spec: CaseSpec = { name: 'mariadb-restart', inject: () => maria.restart(), takeoverAllowed: false };
    const r = await runOutageCase(cluster, spec);
    console.log(formatResult(r));
    const why = `${formatResult(r)}\n${cluster.logs()}`;
    expect(r.acked, why).toBeGreaterThan(20);
    expect(r.lost, why).toBe(0);
    expect(r.duplicated, why).toBe(0);
    expect(r.stepsNotOnce, why).toBe(0);
    expect(r.serversMarkedDown, why).toBe(0);
    expect(r.noServer, why).toBe(0);
    expect(r.takeovers, why).toBe(0);
    expect(r.activeAfter, why).toBe(r.activeBefore);
    expect(r.recoveryMs, why).toBeLessThan(15_000);
  }, 150_000);
});
