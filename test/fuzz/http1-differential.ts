import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { Agent, fetch } from 'undici';
import { type Booster, createBooster } from '../../booster/booster.js';
import { boosterArea } from '../../common/config/areas/booster.js';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { loadConfig } from '../../common/config/load.js';
import type { Database } from '../../common/db/create-database.js';
import { createLogger } from '../../common/log.js';
import { audienceOf, signClusterRequest } from '../../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import type { HttpCase } from './http1-requests.js';

/**
 * The differential harness of the lean HTTP/1.1 path (ADR 0014): two real boosters in front of
 * one recording app server, the same bytes sent to both on fresh connections. "lean" runs with
 * OMFLOW_BOOSTER_LEAN_HTTP1=true (llhttp straight from the socket, the lean upstream client for
 * held bodies, node:http for what it hands over); "node" with false (node:http in front, undici
 * behind). Both must agree on what the client gets and on what the app server sees.
 */
const SECRET = 'fuzz-cluster-secret-0123456789';
const log = createLogger({ name: 'fuzz', level: 'silent' });

/** A request as the app server received it, minus what the booster adds on purpose. */
export interface SeenRequest {
  method: string;
  url: string;
  version: string;
  headers: [string, string][];
  body: string;
}

export interface Outcome {
  /** Status codes the client received, in order. */
  answers: number[];
  forwarded: SeenRequest[];
  /** Answers kept coming until the bound (hangMs): never quiet, never closed. */
  hung: boolean;
}

/**
 * Left out of the comparison: what the booster sets on every forwarded request (never the same
 * twice), and the framing and connection headers of the hop to the app server, which a proxy
 * chooses itself (RFC 9112: a held body goes with Content-Length, a streamed one chunked; undici
 * says keep-alive where the lean client says nothing). The body bytes are compared instead.
 */
const LEFT_OUT = new Set([
  'x-request-id',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-booster-epoch',
  'connection',
  'keep-alive',
  'content-length',
  'transfer-encoding',
]);

/**
 * Null when both agree, else what differs. One allowance: a request refused as malformed may be
 * answered 400 by one side and met by a closed connection on the other; nothing was forwarded
 * either way.
 */
export function disagreement(lean: Outcome, node: Outcome): string | null {
  // Pipelined requests are proxied at once, each on its own upstream connection: their arrival order is timing.
  const f1 = JSON.stringify(lean.forwarded.map((f) => JSON.stringify(f)).sort());
  const f2 = JSON.stringify(node.forwarded.map((f) => JSON.stringify(f)).sort());
  if (f1 !== f2) return `the app server saw ${f1} through the lean path, ${f2} through node:http`;
  const trim = (a: number[], other: number[]) => (a.length === other.length + 1 && a[a.length - 1] === 400 ? a.slice(0, -1) : a);
  const a1 = trim(lean.answers, node.answers);
  const a2 = trim(node.answers, lean.answers);
  if (JSON.stringify(a1) !== JSON.stringify(a2))
    return `the client got ${JSON.stringify(lean.answers)} from the lean path, ${JSON.stringify(node.answers)} from node:http`;
  if (lean.hung !== node.hung)
    return `the connection ${lean.hung ? 'stayed open' : 'closed'} on the lean path, ${node.hung ? 'stayed open' : 'closed'} on node:http`;
  return null;
}

export interface Differential {
  /** Sends the case to both boosters at once, each on a fresh connection. */
  run(c: HttpCase): Promise<{ lean: Outcome; node: Outcome }>;
  /** Open client connections on each booster's port and on the recorder (every case's are closed by its end). */
  connections(): Promise<{ lean: number; node: number; upstream: number }>;
  close(): Promise<void>;
}

/**
 * Written after every case on the same connection: answers come in request order, so once the
 * sentinel's (an unusual status the recorder gives only it) is back, everything before it was
 * answered and forwarded. A case that leaves the connection mid-body swallows it as body bytes;
 * then only the quiet period ends the exchange.
 */
const SENTINEL_PATH = '/__fuzz_sentinel';
const SENTINEL_STATUS = 299;
const SENTINEL = `GET ${SENTINEL_PATH} HTTP/1.1\r\nHost: sentinel\r\n\r\n`;

interface Bound {
  clear(): void;
}

/** A bound that fires this much later than due was held up by a pause of the whole process. */
const STALLED_MS = 1000;

/**
 * A timer for the exchange's bounds that a stalled process does not trip. Both boosters run in
 * this process, and after a long pause (a full GC of a big heap) the timers run before the
 * sockets are read: a bound that fires late by STALLED_MS or more waits once more, so the
 * boosters first read what came during the pause. Without it a stall could give up on one side
 * of a case before its booster had read the bytes, and that side's forward was missed.
 */
function boundTimer(ms: number, fn: () => void): Bound {
  let timer: NodeJS.Timeout;
  const arm = () => {
    const due = performance.now() + ms;
    timer = setTimeout(() => (performance.now() - due >= STALLED_MS ? arm() : fn()), ms);
  };
  arm();
  return { clear: () => clearTimeout(timer) };
}

/**
 * Each exchange comes from a loopback address of its own (127.side.x.y, 64516 of them per side,
 * used in turn): the recorder tells cases apart by X-Forwarded-For, and a request the booster
 * forwards late can never be taken for a later case's.
 */
let nextSource = 0;
function newSource(side: 0 | 1): string {
  const n = nextSource++ % (254 * 254);
  return `127.${side + 1}.${1 + Math.floor(n / 254)}.${1 + (n % 254)}`;
}

export async function startDifferential(db: Database, opts: { hangMs?: number; quietMs?: number } = {}): Promise<Differential> {
  const hangMs = opts.hangMs ?? 5000;
  const quietMs = opts.quietMs ?? 250;
  const seen = new Map<string, SeenRequest[]>();
  const open = new Map<string, number>();
  const sourceOfRequest = (req: IncomingMessage) => {
    const xff = req.headers['x-forwarded-for'];
    return typeof xff === 'string' ? xff.slice(xff.lastIndexOf(',') + 1).trim() : '';
  };
  const upstream: Server = createServer((req, res) => {
    const source = sourceOfRequest(req);
    if (req.url === SENTINEL_PATH) {
      req.resume();
      res.writeHead(SENTINEL_STATUS, { 'content-length': '0' });
      return void res.end();
    }
    if (!source) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      return void res.end('ok'); // the boosters' health checks
    }
    open.set(source, (open.get(source) ?? 0) + 1);
    const chunks: Buffer[] = [];
    const done = (complete: boolean) => {
      open.set(source, (open.get(source) ?? 1) - 1);
      // A body cut off mid-way never reaches the application (a streamed body whose client
      // broke the framing): how far it got before the abort is timing, not a decision.
      if (!complete) return;
      // Names compared in lower case (case-insensitive) and grouped by name: the order of
      // different fields carries no meaning, the order of one field's lines does.
      const headers: [string, string][] = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        const name = req.rawHeaders[i].toLowerCase();
        if (LEFT_OUT.has(name)) continue;
        // A client's valid traceparent is passed on as it came; otherwise the booster starts a trace
        // (new ids every time): both paths build it with the same code, so only its presence is compared.
        headers.push([name, name === 'traceparent' ? '<trace>' : req.rawHeaders[i + 1]]);
      }
      headers.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      const list = seen.get(source) ?? [];
      list.push({ method: req.method ?? '', url: req.url ?? '', version: req.httpVersion, headers, body: Buffer.concat(chunks).toString('latin1') });
      seen.set(source, list);
    };
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      done(true);
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
      res.end('ok');
    });
    req.on('error', () => done(false));
  });
  upstream.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

  const config = (nodeId: string, lean: boolean) =>
    loadConfig([clusterArea, boosterArea], {
      env: {},
      overrides: {
        OMFLOW_CLUSTER_SECRET: SECRET,
        OMFLOW_NODE_ID: nodeId,
        OMFLOW_BOOSTER_HOST: '127.0.0.1',
        OMFLOW_BOOSTER_PORT: 0,
        OMFLOW_BOOSTER_WORKERS: 1,
        OMFLOW_BOOSTER_SLOW_START_MS: 0,
        OMFLOW_BOOSTER_LEAN_HTTP1: lean,
        // Both serve whichever holds the lease (one database, one lease): a takeover under load changes nothing here.
        OMFLOW_BOOSTER_STANDBY_SERVES: true,
        // The recorder never goes away: a pause of this process (a long GC) must not mark it down on
        // one booster between the two sides of a case (a 503 on one path, a forward on the other).
        OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: 600_000,
        // Every generated request gets its own attempt: no adaptive limit learning from the fuzz.
        OMFLOW_BOOSTER_ADAPTIVE_LIMIT: false,
        OMFLOW_BOOSTER_MAX_INFLIGHT_PER_SERVER: 1024,
      },
    });
  const boosters: Booster[] = [];
  // One keep-alive connection per booster for the heartbeats, so the connection counts stay exact.
  const beats = new Agent({ connections: 1 });
  const urls: string[] = [];
  let beat: NodeJS.Timeout | undefined;
  const close = async () => {
    clearInterval(beat);
    await beats.close();
    for (const b of boosters.reverse()) await b.close().catch(() => {});
    await new Promise<void>((r) => upstream.close(() => r()));
    upstream.closeAllConnections();
  };
  try {
    for (const [id, lean] of [
      ['fuzz-lean', true],
      ['fuzz-node', false],
    ] as const) {
      const b = createBooster({ config: config(id, lean), db, log });
      boosters.push(b);
      urls.push(await b.listen());
      if (lean) for (let i = 0; i < 300 && b.role() !== 'active'; i++) await new Promise((r) => setTimeout(r, 50));
    }
    const heartbeat = async () => {
      for (const url of urls) {
        const body = JSON.stringify({
          nodeId: 'fuzz-upstream',
          url: upstreamUrl,
          version: '1',
          seq: Date.now(),
          startedAt: 'fuzz',
          inflight: 0,
          runningSteps: 0,
          stepCapacity: 4,
          eventLoopLagMs: 0,
          dbPool: { used: 0, waiting: 0 },
          cpu: 0,
          rssBytes: 0,
          draining: false,
          epochSeen: 0,
        });
        const headers = signClusterRequest(SECRET, 'fuzz-upstream', 'POST', BOOSTER_PATH.heartbeat, body, Date.now(), { audience: audienceOf(url) });
        await fetch(url + BOOSTER_PATH.heartbeat, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...headers },
          body,
          dispatcher: beats,
        }).catch(() => {});
      }
    };
    await heartbeat();
    beat = setInterval(() => void heartbeat(), 1000);
    for (const [i, b] of boosters.entries())
      for (let n = 0; b.table.routable.length === 0; n++) {
        if (n > 300) throw new Error(`booster ${i} never routed to the recorder`);
        await new Promise((r) => setTimeout(r, 50));
      }
  } catch (err) {
    await close();
    throw err;
  }

  /**
   * One case on a fresh connection. The client writes the bytes and the sentinel, and then waits,
   * as a keep-alive client does, until the sentinel is answered, the booster closes the connection,
   * or nothing more comes for `quietMs`. A case with `close` sends no sentinel: the client
   * half-closes or goes away once its bytes are written.
   */
  async function exchange(url: string, source: string, c: HttpCase, quietMs: number): Promise<Outcome> {
    const u = new URL(url);
    seen.delete(source);
    const received: Buffer[] = [];
    const hung = await new Promise<boolean>((resolve) => {
      const sock = connect({ port: Number(u.port), host: u.hostname, localAddress: source });
      sock.setNoDelay(true);
      const giveUp = boundTimer(hangMs, () => {
        sock.destroy();
        resolve(true);
      });
      let quiet: Bound | undefined;
      let written = false;
      const waitQuiet = () => {
        quiet?.clear();
        if (written) quiet = boundTimer(quietMs, () => sock.destroy());
      };
      sock.on('data', (d: Buffer) => {
        received.push(d);
        if (d.includes(`HTTP/1.1 ${SENTINEL_STATUS} `)) sock.destroy();
        else waitQuiet();
      });
      sock.on('error', () => {});
      sock.on('close', () => {
        giveUp.clear();
        quiet?.clear();
        resolve(false);
      });
      sock.on('connect', async () => {
        for (const [i, w] of [...c.writes, ...(c.close ? [] : [SENTINEL])].entries()) {
          if (sock.destroyed) return;
          if (i > 0) await new Promise((r) => setImmediate(r));
          sock.write(Buffer.from(w, 'latin1'));
        }
        written = true;
        if (c.close === 'end') sock.end();
        else if (c.close === 'destroy') sock.destroy();
        waitQuiet();
      });
    });
    // A forwarded request is recorded when its body ended: wait for any the booster still sends.
    for (let i = 0; i < 100 && (open.get(source) ?? 0) > 0; i++) await new Promise((r) => setTimeout(r, 10));
    open.delete(source);
    const text = Buffer.concat(received).toString('latin1');
    const answers = [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
    const forwarded = seen.get(source) ?? [];
    seen.delete(source);
    return { answers, forwarded, hung };
  }

  const both = async (c: HttpCase, quietMs: number) => {
    const [lean, node] = await Promise.all([exchange(urls[0], newSource(0), c, quietMs), exchange(urls[1], newSource(1), c, quietMs)]);
    return { lean, node };
  };

  return {
    async run(c) {
      const first = await both(c, quietMs);
      // A busy machine can be slower than the quiet period: a disagreement counts only if a
      // second run, with ten times the patience, shows it again.
      return disagreement(first.lean, first.node) === null ? first : both(c, quietMs * 10);
    },
    async connections() {
      const count = (srv: { getConnections(cb: (err: Error | null, n: number) => void): void }) =>
        new Promise<number>((r) => srv.getConnections((_e, n) => r(n)));
      return { lean: await count(boosters[0].server), node: await count(boosters[1].server), upstream: await count(upstream) };
    },
    close,
  };
}

/** The corpus of every case that ever disagreed: one JSON object a line, replayed by the CI test. */
export interface CorpusEntry {
  writes: string[];
  /** How the client left (HttpCase.close); absent: it waited. */
  close?: HttpCase['close'];
  /** What differed when it was found, and which commit fixed it (for the reader). */
  found: string;
  note?: string;
}

export function readCorpus(file: string): CorpusEntry[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('//'))
    .map((l) => JSON.parse(l) as CorpusEntry);
}

export function appendCorpus(file: string, entry: CorpusEntry): void {
  appendFileSync(file, `${JSON.stringify(entry)}\n`);
}

export const CORPUS_FILE = new URL('./http1-disagreements.jsonl', import.meta.url).pathname;
