import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer as createNetServer, type Socket } from 'node:net';
import type { Knex } from 'knex';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { boosterArea } from '../../common/config/areas/booster.js';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { loadConfig } from '../../common/config/load.js';
import { getHelpers } from '../../common/db/helpers/index.js';
import { createLogger } from '../../common/log.js';
import { audienceOf, signClusterRequest, verifyClusterRequest } from '../../common/protocol/cluster-auth.js';
import { EpochFence } from '../../common/protocol/epoch.js';
import { BOOSTER_PATH, HEADER, SERVER_PATH } from '../../common/protocol/headers.js';
import { type Heartbeat, parseStepDispatch } from '../../common/protocol/messages.js';
import { completeStep, enqueueStep, markStepStarted } from '../../common/protocol/steps.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';

export { freePort } from '../../common/free-port.js';

/**
 * Small real app servers for the booster's tests: they heartbeat (signed) to the boosters,
 * answer /healthz and /readyz, record what reaches them, fence epochs, and run dispatched
 * steps through common/protocol/steps.ts — what the real app server does, minus the app.
 */
export const SECRET = 'test-cluster-secret-0123456789';
export const silentLog = createLogger({ name: 'test', level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  bytes: number;
}

export interface FixtureServer {
  id: string;
  url: string;
  seen: Seen[];
  /** Overrides the in-flight count reported in heartbeats (balancing tests). */
  reportedInflight: number | null;
  stepCapacity: number;
  healthy: boolean;
  draining: boolean;
  /** 'run': complete dispatched steps; 'drop': accept and forget (a lost dispatch). */
  stepMode: 'run' | 'drop';
  /** Reset the connection of the next N requests to /reset-once after reading the body. */
  resets: number;
  runs: Map<number, number>;
  dispatches: { stepId: number; epoch: number }[];
  fence: EpochFence;
  uploadBytes: number;
  /** /big?bytes=N: times its writes found the client (the booster) not reading (backpressure reached the server). */
  bigStalls: number;
  /** Bytes of /big answers handed to the socket so far. */
  bigWritten: number;
  /** Resolvers for held /hold requests. */
  release: () => void;
  /** /work models a database-bound server: `workSlots` requests are worked on at once for `workMs` each, the rest wait inside. */
  workSlots: number;
  workMs: number;
  /** Most /work requests inside the server at once (worked on or waiting for a slot). */
  workPeak: number;
  boosters: string[];
  heartbeatNow(): Promise<void>;
  stopHeartbeats(): void;
  startHeartbeats(): void;
  /** Like kill -9 of the process: sockets gone, port refused, heartbeats stop. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** A heartbeat of an idle, healthy server; `fields` sets who it is and anything else a test needs. */
export function idleHeartbeat(fields: Pick<Heartbeat, 'nodeId' | 'url'> & Partial<Heartbeat>): Heartbeat {
  return {
    version: '1',
    seq: 1,
    startedAt: 'start-1',
    inflight: 0,
    runningSteps: 0,
    stepCapacity: 4,
    eventLoopLagMs: 0,
    dbPool: { used: 0, waiting: 0 },
    cpu: 0,
    rssBytes: 0,
    draining: false,
    epochSeen: 0,
    ...fields,
  };
}

export async function startFixtureServer(opts: {
  id: string;
  boosters: string[];
  knex?: Knex;
  heartbeatMs?: number;
  stepCapacity?: number;
  heartbeats?: boolean;
}): Promise<FixtureServer> {
  const sockets = new Set<Socket>();
  let holds: (() => void)[] = [];
  let inflight = 0;
  let seq = 0;
  const startedAt = new Date().toISOString();
  const f: FixtureServer = {
    id: opts.id,
    url: '',
    seen: [],
    reportedInflight: null,
    stepCapacity: opts.stepCapacity ?? 8,
    healthy: true,
    draining: false,
    stepMode: 'run',
    resets: 0,
    runs: new Map(),
    dispatches: [],
    fence: new EpochFence(),
    uploadBytes: 0,
    bigStalls: 0,
    bigWritten: 0,
    workSlots: 4,
    workMs: 10,
    workPeak: 0,
    boosters: opts.boosters,
    release: () => {
      for (const h of holds.splice(0)) h();
    },
    heartbeatNow: async () => {},
    stopHeartbeats: () => {},
    startHeartbeats: () => {},
    kill: async () => {},
    stop: async () => {},
  };
  let running = 0;
  let working = 0;
  let inside = 0;
  const workQueue: (() => void)[] = [];

  async function runStep(stepId: number, epoch: number, leaseMs: number): Promise<void> {
    const knex = opts.knex!;
    running++;
    try {
      const hold = { stepId, serverId: opts.id, epoch };
      if (!(await markStepStarted(knex, { ...hold, leaseMs }))) return;
      await knex.transaction(async (trx) => {
        if (await completeStep(trx, { ...hold, outcome: 'done', result: { by: opts.id } })) f.runs.set(stepId, (f.runs.get(stepId) ?? 0) + 1);
      });
    } finally {
      running--;
    }
  }

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    inflight++;
    res.on('close', () => inflight--);
    const path = (req.url ?? '/').split('?')[0];
    const chunks: Buffer[] = [];
    let bytes = 0;
    const rec: Seen = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, bytes: 0 };
    f.seen.push(rec);
    // The epoch fence of a real server: refuse an older booster.
    const e = EpochFence.parseHeader(req.headers[HEADER.epoch]);
    if (e !== undefined && path !== SERVER_PATH.dispatchStep && !f.fence.admit(e)) {
      res.writeHead(409, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify({ code: 'SERVER_ERR_STALE_EPOCH' }));
    }
    if (path === '/upload') {
      req.on('data', (c: Buffer) => {
        f.uploadBytes += c.length;
        bytes += c.length;
      });
      req.on('end', () => {
        rec.bytes = bytes;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes, server: opts.id }));
      });
      return;
    }
    req.on('data', (c: Buffer) => {
      chunks.push(c);
      bytes += c.length;
    });
    req.on('end', () => {
      rec.bytes = bytes;
      const body = Buffer.concat(chunks);
      if (path === SERVER_PATH.healthz || path === SERVER_PATH.readyz) {
        res.writeHead(f.healthy ? 200 : 503);
        return void res.end(f.healthy ? 'ok' : 'no');
      }
      if (path === SERVER_PATH.dispatchStep) {
        const auth = verifyClusterRequest(SECRET, { method: 'POST', path: req.url ?? '', headers: req.headers, body });
        if (!auth.ok) {
          res.writeHead(401);
          return void res.end();
        }
        const d = parseStepDispatch(JSON.parse(body.toString('utf8')));
        if (!f.fence.admit(d.epoch)) {
          res.writeHead(409, { 'content-type': 'application/json' });
          return void res.end(JSON.stringify({ code: 'SERVER_ERR_STALE_EPOCH' }));
        }
        f.dispatches.push({ stepId: d.stepId, epoch: d.epoch });
        res.writeHead(202, { 'content-type': 'application/json' });
        res.end('{"accepted":true}');
        if (f.stepMode === 'run' && opts.knex) void runStep(d.stepId, d.epoch, d.leaseMs).catch(() => {});
        return;
      }
      if (path === '/reset-once' && f.resets > 0) {
        f.resets--;
        req.socket.destroy();
        return;
      }
      if (path === '/work') {
        f.workPeak = Math.max(f.workPeak, ++inside);
        const work = () => {
          working++;
          setTimeout(() => {
            working--;
            inside--;
            workQueue.shift()?.();
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ server: opts.id, worked: true }));
          }, f.workMs);
        };
        if (working < f.workSlots) work();
        else workQueue.push(work);
        return;
      }
      if (path === '/hold') {
        holds.push(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ server: opts.id, held: true }));
        });
        return;
      }
      if (path === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write('data: first\n\n');
        holds.push(() => res.end('data: last\n\n'));
        return;
      }
      if (path === '/big') {
        // A large download written with backpressure, as a real server streams a file.
        let left = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('bytes') ?? 0);
        const chunk = Buffer.alloc(64 * 1024, 'b');
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
        const pump = () => {
          while (left > 0) {
            const n = Math.min(left, chunk.length);
            left -= n;
            f.bigWritten += n;
            if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
              f.bigStalls++;
              res.once('drain', pump);
              return;
            }
          }
          res.end();
        };
        return void pump();
      }
      if (path === '/db-down') {
        // What a real app server answers while its database is unreachable.
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '2', [HEADER.dbUnavailable]: '1' });
        return void res.end(JSON.stringify({ code: 'SERVER_ERR_DB_UNAVAILABLE', server: opts.id }));
      }
      if (path === '/fail') {
        res.writeHead(503, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify({ server: opts.id }));
      }
      res.writeHead(200, { 'content-type': 'application/json', connection: req.headers.connection === 'close' ? 'close' : 'keep-alive' });
      res.end(JSON.stringify({ server: opts.id, method: req.method, bytes }));
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('upgrade', (_req, socket: Socket) => {
    // A minimal echo "WebSocket": switch protocols, then echo raw bytes.
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-server: ${opts.id}\r\n\r\n`);
    socket.on('data', (d) => socket.write(d));
    sockets.add(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  f.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  f.heartbeatNow = async () => {
    const hb = idleHeartbeat({
      nodeId: opts.id,
      url: f.url,
      version: '1.0.0',
      seq: ++seq,
      startedAt,
      inflight: f.reportedInflight ?? inflight,
      runningSteps: running,
      stepCapacity: f.stepCapacity,
      rssBytes: process.memoryUsage.rss(),
      draining: f.draining,
      epochSeen: f.fence.highest,
    });
    const body = JSON.stringify(hb);
    for (const b of f.boosters) {
      try {
        const r = await fetch(b + BOOSTER_PATH.heartbeat, {
          method: 'POST',
          body,
          headers: {
            'content-type': 'application/json',
            ...signClusterRequest(SECRET, opts.id, 'POST', BOOSTER_PATH.heartbeat, body, Date.now(), { audience: audienceOf(b) }),
          },
          signal: AbortSignal.timeout(1000),
        });
        const reply = (await r.json()) as { epoch?: number; role?: string };
        if (reply.role === 'active' && typeof reply.epoch === 'number') f.fence.admit(reply.epoch);
      } catch {
        // A booster that is down misses this heartbeat; the next one goes out anyway.
      }
    }
  };
  let timer: NodeJS.Timeout | null = null;
  f.startHeartbeats = () => {
    if (timer) return;
    timer = setInterval(() => void f.heartbeatNow(), opts.heartbeatMs ?? 200);
  };
  f.stopHeartbeats = () => {
    if (timer) clearInterval(timer);
    timer = null;
  };
  if (opts.heartbeats !== false) f.startHeartbeats();
  f.kill = async () => {
    f.stopHeartbeats();
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  f.stop = async () => {
    f.stopHeartbeats();
    f.release();
    if (server.listening) {
      server.closeAllConnections();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  };
  holds = [];
  return f;
}

/** A TCP port that accepts connections and never answers: a peer behind a partition. */
export async function startBlackHole(): Promise<{ url: string; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const srv = createNetServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return {
    url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
    },
  };
}

/** Config of an in-process booster on a free loopback port. */
export function boosterConfig(nodeId: string, overrides: Record<string, string | number | boolean | undefined> = {}) {
  return loadConfig([clusterArea, boosterArea], {
    env: {},
    overrides: {
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_NODE_ID: nodeId,
      OMFLOW_BOOSTER_HOST: '127.0.0.1',
      OMFLOW_BOOSTER_PORT: 0,
      OMFLOW_BOOSTER_SLOW_START_MS: 0,
      // One process unless OMFLOW_TEST_BOOSTER_WORKERS asks for data-plane workers (the same suites run both ways).
      OMFLOW_BOOSTER_WORKERS: Number(process.env.OMFLOW_TEST_BOOSTER_WORKERS ?? 1),
      OMFLOW_BOOSTER_HEALTH_INTERVAL_MS: 200,
      OMFLOW_BOOSTER_HEALTH_FAST_INTERVAL_MS: 50,
      OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: 3000,
      OMFLOW_BOOSTER_HEALTH_TIMEOUT_MS: 2000,
      ...overrides,
    },
  });
}

export async function signedPost(url: string, path: string, value: unknown, secret = SECRET): Promise<Response> {
  const body = typeof value === 'string' ? value : JSON.stringify(value);
  return fetch(url + path, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...signClusterRequest(secret, 'test', 'POST', path, body, Date.now(), { audience: audienceOf(url) }) },
  });
}

/** A ticket to hang step rows on (steps.ticket_id is a foreign key). */
export async function createTicket(knex: Knex): Promise<number> {
  const h = getHelpers(knex);
  const key = `f_${randomBytes(4).toString('hex')}`;
  const formId = await h.insertReturningId(knex, 'forms', {
    form_key: key,
    title: 'T',
    fields: '[]',
    published: true,
    created_at: h.now(),
    updated_at: h.now(),
  });
  return h.insertReturningId(knex, 'tickets', {
    ticket_no: `T-${randomBytes(4).toString('hex')}`,
    form_id: formId,
    title: 't',
    state: 'open',
    data: '{}',
    created_at: h.now(),
    updated_at: h.now(),
  });
}

export async function enqueueSteps(knex: Knex, n: number): Promise<number[]> {
  const ticketId = await createTicket(knex);
  const ids: number[] = [];
  for (let i = 0; i < n; i++) ids.push(await enqueueStep(knex, { ticketId, stepKey: `s${i}`, stepType: 'compute' }));
  return ids;
}

/**
 * The migrated database of a suite of in-process boosters (call at the top of a test file):
 * after each test what it pushed on `cleanups` is stopped, last first, and the servers and the
 * leader lease are reset; after all the database is dropped.
 */
export function boosterSuiteDatabase(): { readonly db: TestDatabase; readonly cleanups: (() => Promise<unknown>)[] } {
  let db: TestDatabase | undefined;
  const cleanups: (() => Promise<unknown>)[] = [];
  beforeAll(async () => {
    db = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
    await db!.knex('servers').del();
    await db!.knex('booster_lease').update({ holder: null, expires_at: new Date(0) });
  });
  afterAll(async () => {
    await db?.drop();
  });
  return {
    get db() {
      return db!;
    },
    cleanups,
  };
}
