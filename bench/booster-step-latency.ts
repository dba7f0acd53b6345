// bench/booster-step-latency: how soon a ready step starts on a server (started_at − ready_at,
// both from the database clock) with one booster and two servers, steps enqueued at a steady
// rate. Goal: p99 ≤ 50 ms under normal load.
// Usage: npx tsx bench/booster-step-latency.ts [--rate 50] [--seconds 10] [--poll MS] [--hint]
// --hint: after each enqueue, POST the signed wake-up hint (what the app server does after its commit).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import knexFactory from 'knex';
import { createBooster } from '../booster/booster.js';
import { STEPS_READY_PATH } from '../booster/control-plane/control-api.js';
import { boosterArea } from '../common/config/areas/booster.js';
import { clusterArea } from '../common/config/areas/cluster.js';
import { loadConfig } from '../common/config/load.js';
import { wrapDatabase, wrapErrors } from '../common/db/create-database.js';
import { getHelpers } from '../common/db/helpers/index.js';
import { createLogger } from '../common/log.js';
import { audienceOf, signClusterRequest } from '../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../common/protocol/headers.js';
import { parseStepDispatch } from '../common/protocol/messages.js';
import { completeStep, enqueueStep, markStepStarted } from '../common/protocol/steps.js';
import { SECRET, startPostgres } from './booster-lib.js';

const args = process.argv.slice(2);
const rate = Number(args[args.indexOf('--rate') + 1] || 0) || 50;
const seconds = Number(args[args.indexOf('--seconds') + 1] || 0) || 10;
const hint = args.includes('--hint');
const poll = args.includes('--poll') ? Number(args[args.indexOf('--poll') + 1]) : undefined;
const pg = await startPostgres();
const knex = knexFactory({ client: 'pg', connection: pg.url, pool: { min: 2, max: 20 } });
wrapErrors(knex, 'postgres');
const db = wrapDatabase(knex, 'postgres');
const config = loadConfig([clusterArea, boosterArea], {
  env: {},
  overrides: {
    OMFLOW_CLUSTER_SECRET: SECRET,
    OMFLOW_NODE_ID: 'lat-b',
    OMFLOW_BOOSTER_HOST: '127.0.0.1',
    OMFLOW_BOOSTER_PORT: 0,
    OMFLOW_LOG_LEVEL: 'error',
    OMFLOW_BOOSTER_DISPATCH_POLL_MS: poll,
  },
});
const booster = createBooster({ config, db, log: createLogger({ name: 'bench', level: 'error' }) });
const base = await booster.listen();
const servers: { close(): void }[] = [];
const timers: NodeJS.Timeout[] = [];
try {
  for (const id of ['lat-s1', 'lat-s2']) {
    let running = 0;
    const srv = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        if (req.method !== 'POST') return void res.writeHead(200).end('ok');
        const d = parseStepDispatch(JSON.parse(Buffer.concat(chunks).toString()));
        res.writeHead(202).end();
        running++;
        const hold = { stepId: d.stepId, serverId: id, epoch: d.epoch };
        void markStepStarted(knex, { ...hold, leaseMs: d.leaseMs })
          .then(() => knex.transaction((trx) => completeStep(trx, { ...hold, outcome: 'done' })))
          .finally(() => running--);
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    servers.push(srv);
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    let seq = 0;
    const beat = async () => {
      const body = JSON.stringify({
        nodeId: id,
        url,
        version: 'b',
        seq: ++seq,
        startedAt: 'x',
        inflight: 0,
        runningSteps: running,
        stepCapacity: 32,
        eventLoopLagMs: 0,
        dbPool: { used: 0, waiting: 0 },
        cpu: 0,
        rssBytes: 0,
        draining: false,
        epochSeen: 0,
      });
      await fetch(base + BOOSTER_PATH.heartbeat, {
        method: 'POST',
        body,
        headers: signClusterRequest(SECRET, id, 'POST', BOOSTER_PATH.heartbeat, body, Date.now(), { audience: audienceOf(base) }),
      }).then((r) => r.arrayBuffer());
    };
    await beat();
    timers.push(setInterval(() => void beat(), 1000));
  }
  const h = getHelpers(knex);
  const formId = await h.insertReturningId(knex, 'forms', {
    form_key: 'lat',
    title: 'T',
    fields: '[]',
    published: true,
    created_at: h.now(),
    updated_at: h.now(),
  });
  const ticketId = await h.insertReturningId(knex, 'tickets', {
    ticket_no: 'LAT-1',
    form_id: formId,
    title: 't',
    state: 'open',
    data: '{}',
    created_at: h.now(),
    updated_at: h.now(),
  });
  await new Promise((r) => setTimeout(r, 500));
  const total = rate * seconds;
  for (let i = 0; i < total; i++) {
    await enqueueStep(knex, { ticketId, stepKey: `s${i}`, stepType: 'compute' });
    if (hint) {
      void fetch(base + STEPS_READY_PATH, {
        method: 'POST',
        headers: signClusterRequest(SECRET, 'lat-app', 'POST', STEPS_READY_PATH, '', Date.now(), { audience: audienceOf(base) }),
      }).then(
        (r) => r.arrayBuffer(),
        () => {},
      );
    }
    await new Promise((r) => setTimeout(r, 1000 / rate));
  }
  const end = Date.now() + 10_000;
  while (Date.now() < end && Number((await knex('steps').whereNot('state', 'done').count({ n: '*' }))[0].n) > 0) await new Promise((r) => setTimeout(r, 50));
  const rows = await knex('steps').select(knex.raw('EXTRACT(EPOCH FROM (started_at - ready_at)) * 1000 AS ms'), 'dispatch_count').whereNotNull('started_at');
  const ms = rows.map((r) => Number(r.ms)).sort((a, b) => a - b);
  const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor((p / 100) * ms.length))];
  console.log(
    `\nbooster-step-latency: ${total} steps at ${rate}/s, 2 servers, one booster (dispatch poll ≤ ${config.booster.dispatchPollMs} ms${hint ? ', wake-up hint after each enqueue' : ''})`,
  );
  console.log(
    `ready → started ms: p50 ${q(50).toFixed(1)}, p90 ${q(90).toFixed(1)}, p99 ${q(99).toFixed(1)}, max ${ms[ms.length - 1].toFixed(1)} (goal p99 <= 50); started ${ms.length}/${total}`,
  );
} finally {
  for (const t of timers) clearInterval(t);
  await booster.close();
  for (const s of servers) s.close();
  await knex.destroy();
  await pg.stop();
}
