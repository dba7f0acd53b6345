// bench/http1-fuzz: the long run of the differential fuzzing of the lean HTTP/1.1 path against
// node:http (test/fuzz/http1-differential.ts; CI runs a bounded slice in
// test/fuzz/http1-differential.test.ts). Generates --cases requests (fast-check, --seed), sends
// each to both boosters on fresh connections, --concurrency at a time, and prints the cases run,
// the disagreements, the rate, and how the cases split (forwarded / refused / hand-over shapes).
// The progress line also prints the process's heap and RSS (the run hosts both boosters, so a
// leak per request shows there), and the end line their peaks.
// Every disagreement is appended to the corpus (test/fuzz/http1-disagreements.jsonl) unless
// --no-corpus, and the first ones are printed. Database: an embedded PostgreSQL.
// Usage: flock /work/coord/bench.lock npx tsx bench/http1-fuzz.ts [--cases 1000000] [--seed N] [--concurrency 16] [--no-corpus]
import { readdirSync } from 'node:fs';
import fc from 'fast-check';
import { createDatabase } from '../common/db/create-database.js';
import { migrateLatest } from '../common/db/migrate.js';
import { appendCorpus, CORPUS_FILE, disagreement, startDifferential } from '../test/fuzz/http1-differential.js';
import { httpCase } from '../test/fuzz/http1-requests.js';
import { dbConfig } from '../test/helpers/db.js';
import { startEmbeddedPostgres } from './booster-lib.js';

const args = process.argv.slice(2);
const flag = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined);
const total = Number(flag('cases') ?? 100_000);
const seed = Number(flag('seed') ?? Date.now() % 2 ** 31);
const concurrency = Math.min(64, Number(flag('concurrency') ?? 16));
const keepCorpus = !args.includes('--no-corpus');
const BATCH = 2000;

const pg = await startEmbeddedPostgres();
const db = createDatabase(dbConfig(pg.url, { poolMax: 4 }));
await migrateLatest(db.knex);
const diff = await startDifferential(db);
const started = performance.now();
let run = 0;
let disagreements = 0;
const split = { forwarded: 0, refused: 0, hung: 0 };
let lastPrint = started;
const peak = { heap: 0, rss: 0 };
const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const found: { writes: string[]; found: string }[] = [];
// Ctrl-C or SIGTERM ends the run cleanly: the cases under way finish, the figures print, the database stops.
let stopping = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => (stopping = true));
try {
  console.log(`http1-fuzz: ${total} generated cases, seed ${seed}, ${concurrency} at a time, lean path vs node:http`);
  // One fast-check stream of cases, drawn batch by batch (the seed makes the run repeatable).
  let batchNo = 0;
  while (run < total && !stopping) {
    const cases = fc.sample(httpCase, { seed: seed + batchNo++, numRuns: Math.min(BATCH, total - run) });
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < cases.length && !stopping) {
          const c = cases[next++];
          const { lean, node } = await diff.run(c);
          run++;
          if (node.forwarded.length) split.forwarded++;
          else split.refused++;
          if (node.hung || lean.hung) split.hung++;
          const why = disagreement(lean, node);
          if (why) {
            disagreements++;
            found.push({ writes: c.writes, found: why });
            if (disagreements <= 20) console.log(`  DISAGREEMENT ${disagreements}: ${JSON.stringify(c.writes.join(''))}\n    ${why}`);
          }
        }
      }),
    );
    const mem = process.memoryUsage();
    peak.heap = Math.max(peak.heap, mem.heapUsed);
    peak.rss = Math.max(peak.rss, mem.rss);
    if (performance.now() - lastPrint > 10_000) {
      lastPrint = performance.now();
      // Open descriptors and memory of this process (both boosters, the recorder, the clients): a leak shows here first.
      console.log(
        `  … ${run} cases, ${disagreements} disagreements, ${(run / ((lastPrint - started) / 1000)).toFixed(0)} cases/s, ${readdirSync('/proc/self/fd').length} fds open, heap ${mb(mem.heapUsed)}, rss ${mb(mem.rss)}`,
      );
    }
  }
  const seconds = (performance.now() - started) / 1000;
  // Each disagreement again, alone, three times: one that does not come back was the machine's
  // timing under load (the corpus keeps it, marked), one that does is a defect.
  let reproducible = 0;
  for (const f of found) {
    let again = 0;
    for (let i = 0; i < 3; i++) {
      const { lean, node } = await diff.run({ writes: f.writes });
      if (disagreement(lean, node)) again++;
    }
    if (again > 0) reproducible++;
    console.log(`  replayed alone: ${again}/3 disagree again: ${JSON.stringify(f.writes.join('')).slice(0, 160)}`);
    if (keepCorpus)
      appendCorpus(CORPUS_FILE, { ...f, note: again > 0 ? `reproduced ${again}/3 alone` : 'did not reproduce alone (3 runs): timing under load' });
  }
  console.log(
    `http1-fuzz: ${run} cases in ${seconds.toFixed(0)} s (${(run / seconds).toFixed(0)} cases/s), ${disagreements} disagreements (${reproducible} reproducible alone); ` +
      `${split.forwarded} reached the app server, ${split.refused} refused at the booster, ${split.hung} left open by a side (bounded at 5 s); ` +
      `peak heap ${mb(peak.heap)}, peak rss ${mb(peak.rss)} (sampled after each batch of ${BATCH})`,
  );
} finally {
  await diff.close();
  await db.destroy();
  await pg.stop();
}
