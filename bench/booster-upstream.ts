// A minimal app server for the booster benchmarks (run as its own process): answers GET and
// POST with a tiny body, heartbeats (signed) to the boosters in BOOSTERS, and — when DB_URL is
// set — stores keyed writes (POST /tickets with Idempotency-Key) once, like the real server.
// GET /work models a database-bound server: WORK_SLOTS requests are worked on at once for WORK_MS
// each (no CPU), the rest wait inside it; GET /work-peak answers the most that were inside at once
// and starts counting again. Requests are fenced by X-Booster-Epoch like the real server's: an
// epoch older than the newest an active booster's heartbeat reply named is refused with 409
// SERVER_ERR_STALE_EPOCH and X-Omflow-Stale-Epoch, before anything runs.
import { createServer } from 'node:http';
import knexFactory from 'knex';
import { audienceOf, signClusterRequest } from '../common/protocol/cluster-auth.js';
import { EpochFence } from '../common/protocol/epoch.js';
import { BOOSTER_PATH, HEADER } from '../common/protocol/headers.js';

const port = Number(process.env.PORT ?? 0);
const id = process.env.NODE_ID ?? `up-${port}`;
const secret = process.env.SECRET ?? 'bench-cluster-secret-0123456789';
const boosters = (process.env.BOOSTERS ?? '').split(',').filter(Boolean);
const knex = process.env.DB_URL ? knexFactory({ client: 'pg', connection: process.env.DB_URL, pool: { min: 1, max: 10 } }) : null;
let inflight = 0;
const fence = new EpochFence();
const OK = Buffer.from('{"ok":true}');
const workSlots = Number(process.env.WORK_SLOTS ?? 8);
const workMs = Number(process.env.WORK_MS ?? 20);
let working = 0;
let inside = 0;
let peak = 0;
const workQueue: (() => void)[] = [];

function work(res: import('node:http').ServerResponse): void {
  peak = Math.max(peak, ++inside);
  const run = () => {
    working++;
    setTimeout(() => {
      working--;
      inside--;
      workQueue.shift()?.();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': OK.length });
      res.end(OK);
    }, workMs);
  };
  if (working < workSlots) run();
  else workQueue.push(run);
}

async function keyedWrite(key: string): Promise<number> {
  // The key and the ticket commit in one transaction: a replay returns the stored answer.
  return knex!
    .transaction(async (trx) => {
      const existing = await trx('bench_tickets').where('idem_key', key).first();
      if (existing) return 200;
      await trx('bench_tickets').insert({ idem_key: key, created_by: id });
      return 201;
    })
    .catch(async (err: { code?: string }) => {
      if (err.code === '23505') return 200;
      throw err;
    });
}

const server = createServer((req, res) => {
  inflight++;
  res.on('close', () => inflight--);
  const epoch = EpochFence.parseHeader(req.headers[HEADER.epoch]);
  if (epoch !== undefined && fence.isStale(epoch)) {
    req.resume();
    res.writeHead(409, { 'content-type': 'application/json', [HEADER.staleEpoch]: String(fence.highest) });
    return void res.end('{"code":"SERVER_ERR_STALE_EPOCH"}');
  }
  if (req.url === '/work') return work(res);
  if (req.url === '/work-peak') {
    res.end(JSON.stringify({ peak }));
    peak = inside;
    return;
  }
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': OK.length });
    res.end(OK);
    return;
  }
  req.on('data', () => {});
  req.on('end', () => {
    const key = req.headers['idempotency-key'];
    if (knex && req.url === '/tickets' && typeof key === 'string') {
      keyedWrite(key).then(
        (status) => {
          res.writeHead(status, { 'content-type': 'application/json', 'content-length': OK.length });
          res.end(OK);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': OK.length });
    res.end(OK);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1', () => {
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  process.stdout.write(`LISTENING ${url}\n`);
  let seq = 0;
  const startedAt = new Date().toISOString();
  const beat = async () => {
    const body = JSON.stringify({
      nodeId: id,
      url,
      version: 'bench',
      seq: ++seq,
      startedAt,
      inflight,
      runningSteps: 0,
      stepCapacity: 0,
      eventLoopLagMs: 0,
      dbPool: { used: 0, waiting: 0 },
      cpu: 0,
      rssBytes: process.memoryUsage.rss(),
      draining: false,
      epochSeen: fence.highest,
    });
    for (const b of boosters) {
      await fetch(b + BOOSTER_PATH.heartbeat, {
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          ...signClusterRequest(secret, id, 'POST', BOOSTER_PATH.heartbeat, body, Date.now(), { audience: audienceOf(b) }),
        },
        signal: AbortSignal.timeout(500),
      }).then(
        async (r) => {
          const reply = (await r.json().catch(() => ({}))) as { role?: string; epoch?: number };
          if (reply.role === 'active' && typeof reply.epoch === 'number') fence.admit(reply.epoch);
        },
        () => {},
      );
    }
  };
  if (boosters.length) setInterval(() => void beat(), 500);
});
