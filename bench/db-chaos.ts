// bench/db-chaos: the chaos suite's database outages (test/chaos/scenarios.ts, the same code the
// tests assert with) as a benchmark. A Booster pair and two agents with their app servers, as
// processes, under steady keyed ticket load (3 clients, one retry each), on
//   - PostgreSQL 15 with a synchronous streaming replica, multi-host URL with
//     target_session_attrs=read-write: a stall (SIGSTOP of postmaster and backends), a restart
//     (fast stop, start), kill -9 of the primary with the replica promoted 1 s later;
//   - MariaDB (its own mariadbd): a restart.
// Prints per case the outage, the client-visible unavailable time (longest pause between two
// acknowledged tickets), database-back → first acknowledgement, takeovers, errors after the one
// client retry, lost and duplicated tickets, and whether the goal of issue 12 holds
// (unavailable ≤ outage + 1 s; 0 takeovers for stalls/restarts under 5 s; 0 lost; 0 duplicated).
// Usage: flock /tmp/omflow-bench.lock npx tsx bench/db-chaos.ts [--stall-ms 2000] [--skip-mariadb]
import { type ChaosCluster, startChaosCluster } from '../test/chaos/cluster.js';
import { type MariaDbServer, mariadbMissing, startMariaDb } from '../test/chaos/mariadb-server.js';
import { type PostgresHa, postgresBinariesMissing, startPostgresHa } from '../test/chaos/postgres-ha.js';
import { type CaseResult, type CaseSpec, formatResult, runOutageCase } from '../test/chaos/scenarios.js';

const args = process.argv.slice(2);
const opt = (name: string, fallback: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const stallMs = opt('--stall-ms', 2000);
const results: CaseResult[] = [];

async function runCases(cluster: ChaosCluster, specs: CaseSpec[]): Promise<void> {
  for (const spec of specs) {
    const r = await runOutageCase(cluster, spec);
    console.log(formatResult(r));
    results.push(r);
  }
}

const pgMissing = postgresBinariesMissing();
if (pgMissing) {
  console.error(`db-chaos cannot run the PostgreSQL cases: ${pgMissing}`);
  process.exit(1);
}
let ha: PostgresHa | undefined;
let cluster: ChaosCluster | undefined;
try {
  ha = await startPostgresHa({ replica: true });
  const pg = ha;
  console.log(`PostgreSQL primary + replica (${await pg.replicaSyncState()}), processes on the multi-host URL`);
  cluster = await startChaosCluster({ name: 'bench-pg', dbUrl: pg.multiHostUrl });
  await runCases(cluster, [
    { name: `pg-stall-${stallMs / 1000}s`, inject: () => pg.stall(stallMs), takeoverAllowed: false },
    { name: 'pg-restart', inject: () => pg.restart(), takeoverAllowed: false },
    { name: 'pg-failover', inject: () => pg.killPrimaryAndPromote(1000), takeoverAllowed: true },
  ]);
} finally {
  await cluster?.stop();
  await ha?.stop();
}

const mariaMissing = args.includes('--skip-mariadb') ? 'skipped by --skip-mariadb' : mariadbMissing();
if (mariaMissing) console.log(`mariadb-restart: not run (${mariaMissing})`);
else {
  let maria: MariaDbServer | undefined;
  let mc: ChaosCluster | undefined;
  try {
    maria = await startMariaDb();
    const m = maria;
    mc = await startChaosCluster({ name: 'bench-maria', dbUrl: m.url });
    await runCases(mc, [{ name: 'mariadb-restart', inject: () => m.restart(), takeoverAllowed: false }]);
  } finally {
    await mc?.stop();
    await maria?.stop();
  }
}

console.log('\ncase                   outage  unavail  back→ack  takeovers  errors  lost  dup  goal');
for (const r of results)
  console.log(
    `${r.name.padEnd(22)} ${String(r.outageMs).padStart(6)}  ${String(r.unavailableMs).padStart(7)}  ${String(r.recoveryMs).padStart(8)}  ${String(r.takeovers).padStart(9)}  ${String(r.errors).padStart(6)}  ${String(r.lost).padStart(4)}  ${String(r.duplicated).padStart(3)}  ${r.goal.holds ? 'holds' : `MISSED (${r.goal.failed.join('; ')})`}`,
  );
process.exit(results.every((r) => r.goal.holds) ? 0 : 2);
