// bench/booster-vip-failover: 20 trials of kill -9 on the active booster while a client in its
// own network namespace raises tickets through the VIP the boosters own through the lease (the
// namespace lab of test/helpers/vip-cluster.ts: two boosters, one real app server, the client,
// on a private bridge; the database over its unix socket). Prints the client-visible gap (the
// longest pause between acknowledged tickets around each kill), tickets failed after one client
// retry, and acknowledged tickets lost. Needs root (ip netns) and iputils arping.
// Usage: npx tsx bench/booster-vip-failover.ts [--trials 20] [--logs] [--stop-post]
// (--logs keeps each new active's log; --stop-post: see below)
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createDatabase } from '../common/db/create-database.js';
import { seed } from '../server/seed.js';
import { dbConfig } from '../test/helpers/db.js';
import { netnsUnavailable } from '../test/helpers/netns.js';
import { waitFor } from '../test/helpers/poll.js';
import { type ClientOutcome, LOGIN, longestPause, median, startVipCluster, VIP, type VipCluster } from '../test/helpers/vip-cluster.js';
import { SECRET, startPostgres } from './booster-lib.js';

const args = process.argv.slice(2);
const trials = Number(args[args.indexOf('--trials') + 1] || 0) || 20;
// By default the killed booster's address stays in its namespace until it restarts, so clients
// still sent there get RSTs (fast errors, retried by the client). --stop-post does what the VIP
// drop-in's ExecStopPost does on a real host (docs/operator-guide.md): remove it at once, so
// clients meet silence until the new owner's gratuitous ARP, as after a host crash (a lost SYN
// is retransmitted after 1 s): fewer failed requests, a longer gap.
const stopPost = args.includes('--stop-post');
const why = netnsUnavailable();
if (why) {
  console.error(`booster-vip-failover cannot run: ${why}`);
  process.exit(1);
}
const names = ['a', 'b'];
const logDir = args.includes('--logs') ? mkdtempSync(`${tmpdir()}/omflow-vip-bench-`) : null;
if (logDir) console.error(`booster logs of each trial's new active go to ${logDir}`);

/** The client namespace's ARP entry for the VIP, with the booster whose MAC it names. */
function clientNeighbour(c: VipCluster): string {
  const entry = c.lab.ipIn('cli', ['neigh', 'show', VIP]).trim() || 'none';
  const mac = /lladdr (\S+)/.exec(entry)?.[1];
  const owner = names.find((n) => mac && c.lab.ipIn(n, ['-o', 'link', 'show', 'eth0']).includes(mac));
  return `${entry}${owner ? ` (booster ${owner})` : ''}`;
}

/** The new active's leadership/VIP log lines and the client's failed attempts, as "+ms what" after the kill. */
function trialTimeline(killedAt: number, boosterLog: string, outcome: ClientOutcome): string[] {
  const rows: [number, string][] = [];
  for (const line of boosterLog.split('\n')) {
    if (!line.startsWith('{')) continue;
    let rec: { time?: string; msg?: string; reason?: string; epoch?: number };
    try {
      rec = JSON.parse(line);
    } catch {
      continue;
    }
    const at = Date.parse(rec.time ?? '');
    if (!(at >= killedAt - 200) || !rec.msg) continue;
    if (!/active|virtual IP|stepping down|lease|peer booster|ARP/.test(rec.msg)) continue;
    rows.push([at - killedAt, `booster: ${rec.msg}${rec.reason ? ` (${rec.reason})` : ''}`]);
  }
  for (const f of outcome.failures) if (f.at >= killedAt - 200) rows.push([f.at - killedAt, `client attempt failed: ${f.why}`]);
  const acks = outcome.acks.filter((a) => a.at >= killedAt - 1000).sort((a, b) => a.at - b.at);
  let worst: [number, number] | null = null;
  for (let i = 1; i < acks.length; i++) if (!worst || acks[i]!.at - acks[i - 1]!.at > acks[worst[1]]!.at - acks[worst[0]]!.at) worst = [i - 1, i];
  if (worst) {
    rows.push([acks[worst[0]]!.at - killedAt, 'client: last ack before the gap']);
    rows.push([acks[worst[1]]!.at - killedAt, `client: first ack after the gap (that attempt took ${acks[worst[1]]!.took} ms)`]);
  }
  for (const a of acks) if (a.at > killedAt && (a.took ?? 0) > 1000) rows.push([a.at - killedAt, `client: slow ack, the attempt took ${a.took} ms`]);
  return rows.sort((a, b) => a[0] - b[0]).map(([ms, what]) => `+${ms} ms ${what}`);
}
const vipCidr = `${VIP}/24`;
const pg = await startPostgres();
const db = createDatabase(dbConfig(pg.url));
let cluster: VipCluster | undefined;
try {
  await seed(db, { adminUser: LOGIN.user, adminPassword: LOGIN.password, demo: true });
  cluster = await startVipCluster({ dbUrl: pg.url, knex: db.knex, secret: SECRET });
  const c = cluster;
  const holder = async () => {
    const i = await c.activeIndex();
    return i >= 0 && c.lab.addresses(names[i]!).includes(vipCidr) ? i : -1;
  };
  const client = await c.startClient();
  const gaps: number[] = [];
  const takeovers: number[] = [];
  const failedPerTrial: number[] = [];
  for (let t = 0; t < trials; t++) {
    const dead = await waitFor(
      async () => {
        const i = await holder();
        const recent = client.outcome.acks.filter((a) => a.at > Date.now() - 1000).length;
        return i >= 0 && recent >= 5 ? i + 1 : 0;
      },
      { what: 'an active with the VIP and tickets flowing', timeoutMs: 60_000 },
    ).then((n) => n - 1);
    const other = 1 - dead;
    const failedBefore = client.outcome.failed;
    const killedAt = Date.now();
    await c.kill9(dead, { stopPost });
    await waitFor(async () => (await holder()) === other, { what: 'takeover with the VIP', timeoutMs: 30_000, intervalMs: 5 });
    takeovers.push(Date.now() - killedAt);
    const neighAtTakeover = `+${Date.now() - killedAt} ms client neighbour entry for the VIP: ${clientNeighbour(c)}`;
    await waitFor(() => client.outcome.acks.filter((a) => a.at > killedAt).length >= 10, { what: 'tickets after the takeover', timeoutMs: 60_000 });
    const gap = longestPause(client.outcome.acks, killedAt - 1000, Date.now());
    gaps.push(gap ?? NaN);
    failedPerTrial.push(client.outcome.failed - failedBefore);
    c.startBooster(dead);
    await waitFor(() => /booster listening/.test(c.boosters[dead]!.output()) && !c.lab.addresses(names[dead]!).includes(vipCidr), {
      what: 'restarted booster standby without the VIP',
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    const flaps = /stepping down to standby/.test(c.boosters[other]!.output())
      ? ' (this booster has stepped down at least once since it started: a renewal stalled)'
      : '';
    process.stderr.write(
      `trial ${t + 1}/${trials}: killed ${names[dead]}, takeover with VIP ${takeovers[t]} ms, client-visible gap ${gap} ms, ${failedPerTrial[t]} failed after one retry${flaps}\n`,
    );
    // Where the time went: the new active's own log and every failed client attempt, in ms after the kill.
    const timeline = [...trialTimeline(killedAt, c.boosters[other]!.output(), client.outcome), neighAtTakeover];
    process.stderr.write(`${timeline.map((l) => `    ${l}`).join('\n')}\n`);
    if (logDir) writeFileSync(`${logDir}/trial-${t + 1}-${names[other]}.log`, c.boosters[other]!.output());
    client.outcome.failures.length = 0;
    await new Promise((r) => setTimeout(r, 500));
  }
  await client.stop();
  const acked = client.outcome.acks.map((a) => a.key);
  const stored = new Set<string>();
  for (let i = 0; i < acked.length; i += 1000)
    for (const r of await db
      .knex('tickets')
      .whereIn('title', acked.slice(i, i + 1000))
      .select('title'))
      stored.add(r.title as string);
  const lost = acked.filter((k) => !stored.has(k)).length;
  const dup = await db.knex('tickets').select('title').count({ n: '*' }).groupBy('title').havingRaw('count(*) > 1');
  const max = (xs: number[]) => Math.max(...xs);
  console.log(
    `\nbooster-vip-failover: ${trials} trials of kill -9 on the active${stopPost ? ' (then the drop-in ExecStopPost: address removed)' : ' (stale address left until restart)'}, a client of 4 workers raising tickets through ${VIP}:5169 from its own namespace`,
  );
  console.log(
    `client-visible gap ms: median ${median(gaps).toFixed(0)}, max ${max(gaps).toFixed(0)}, min ${Math.min(...gaps).toFixed(0)} (goal: median <= 1500, max <= 3000)`,
  );
  console.log(
    `takeover with the VIP on the new active (lease + ip addr, seen from the test): median ${median(takeovers).toFixed(0)} ms, max ${max(takeovers)} ms`,
  );
  console.log(
    `tickets: ${acked.length} acknowledged, ${client.outcome.failed} failed after one client retry (${failedPerTrial.join(' ')} per trial), ${client.outcome.retried} retried`,
  );
  console.log(`acknowledged but lost: ${lost} (goal 0), duplicated titles: ${dup.length}`);
} finally {
  await cluster?.destroy();
  await db.destroy();
  await pg.stop();
}
