import { execFileSync } from 'node:child_process';
import cluster from 'node:cluster';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../../booster/booster.js';
import { audienceOf, signClusterRequest } from '../../../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';
import { boosterConfig, boosterSuiteDatabase, idleHeartbeat, SECRET, silentLog, until } from '../fixtures.js';

/**
 * The default configuration's front door (data-plane workers, TLS on) under every transport a
 * real client uses: HTTP/2 and HTTP/1.1 over TLS, plain HTTP/1.1 (cluster members), to every
 * /_booster/ route. A worker forwards these to the primary; nothing a client sends may take a
 * worker down (an HTTP/2 request used to: its pseudo-headers were copied into http.request).
 */
const suite = boosterSuiteDatabase();
const { cleanups } = suite;
let dir: string;
let ca: string;
let files: { certFile: string; keyFile: string };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'omflow-front-door-'));
  files = { certFile: join(dir, 'b.crt'), keyFile: join(dir, 'b.key') };
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2'],
      ...['-keyout', files.keyFile, '-out', files.certFile, '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
    ],
    { stdio: 'ignore' },
  );
  ca = readFileSync(files.certFile, 'utf8');
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const workerPids = () =>
  Object.values(cluster.workers ?? {})
    .filter((w) => w && !w.isDead())
    .map((w) => w!.process.pid)
    .sort();

interface Answer {
  status: number;
  body: string;
}
type Transport = (method: string, path: string, headers?: Record<string, string>, body?: string) => Promise<Answer>;

function h1(base: string, secure: boolean): Transport {
  return (method, path, headers = {}, body) =>
    new Promise((resolve, reject) => {
      const url = new URL(path, base);
      const send = secure ? httpsRequest : httpRequest;
      const req = send(url, { method, headers: { ...headers, connection: 'close' }, ca, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
}

function h2(base: string): Transport {
  return (method, path, headers = {}, body) =>
    new Promise((resolve, reject) => {
      const session = h2connect(base, { ca });
      session.on('error', reject);
      const stream = session.request({ ':method': method, ':path': path, ...headers }, { endStream: body === undefined });
      let status = 0;
      let text = '';
      stream.setEncoding('utf8');
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('data', (c) => (text += c));
      stream.on('end', () => {
        session.close();
        resolve({ status, body: text });
      });
      stream.on('error', (err) => {
        session.destroy();
        reject(err);
      });
      if (body !== undefined) stream.end(body);
    });
}

/** Every /_booster/ route, unauthenticated, and what it must answer (never a dropped connection). */
const ROUTES: [method: string, path: string, status: number][] = [
  ['GET', BOOSTER_PATH.active, 200],
  ['HEAD', BOOSTER_PATH.active, 200],
  ['GET', BOOSTER_PATH.status, 401],
  ['GET', BOOSTER_PATH.metrics, 401],
  ['GET', `${BOOSTER_PATH.events}?limit=5`, 401],
  ['POST', BOOSTER_PATH.heartbeat, 401],
  ['POST', BOOSTER_PATH.agentReport, 401],
  ['POST', BOOSTER_PATH.drain('s1'), 401],
  ['POST', BOOSTER_PATH.undrain('s1'), 401],
  ['POST', BOOSTER_PATH.patchNotice, 401],
  ['POST', BOOSTER_PATH.stepsReady, 401],
  ['POST', BOOSTER_PATH.licenseChanged, 401],
  ['GET', '/_booster/no-such-path', 404],
  ['DELETE', BOOSTER_PATH.active, 404],
];

describe('the default front door (workers + TLS) under real transports', () => {
  let b: Booster & { https: string; http: string };

  beforeAll(async () => {
    const booster = createBooster({
      config: boosterConfig('front-door', {
        OMFLOW_BOOSTER_WORKERS: 2,
        OMFLOW_BOOSTER_TLS_CERT_FILE: files.certFile,
        OMFLOW_BOOSTER_TLS_KEY_FILE: files.keyFile,
      }),
      db: suite.db.db,
      log: silentLog,
    });
    const url = await booster.listen();
    const port = new URL(url).port;
    b = Object.assign(booster, { https: `https://localhost:${port}`, http: `http://127.0.0.1:${port}` });
    await until(() => b.role() === 'active', 'booster active', 15_000);
  });
  afterAll(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
    await b?.close();
  });

  for (const [name, transport] of [
    ['HTTP/2 over TLS', () => h2(b.https)],
    ['HTTP/1.1 over TLS', () => h1(b.https, true)],
    ['plain HTTP/1.1', () => h1(b.http, false)],
  ] as const) {
    it(`answers every /_booster/ route over ${name} and no worker exits`, async () => {
      const before = workerPids();
      expect(before).toHaveLength(2);
      const send = transport();
      // Twice over: the kernel hands fresh connections to either worker.
      for (let round = 0; round < 2; round++) {
        for (const [method, path, status] of ROUTES) {
          const body = method === 'POST' ? '{}' : undefined;
          const r = await send(method, path, body ? { 'content-type': 'application/json' } : {}, body);
          expect({ method, path, status: r.status }).toEqual({ method, path, status });
          if (method === 'GET' && path === BOOSTER_PATH.active) expect(JSON.parse(r.body)).toEqual({ active: true });
        }
      }
      // A signed heartbeat is forwarded intact (path and body are what the signature covers).
      const hb = JSON.stringify(idleHeartbeat({ nodeId: `hb-${name.replace(/\W/g, '')}`, url: 'http://127.0.0.1:9' }));
      const path = BOOSTER_PATH.heartbeat;
      const signed = signClusterRequest(SECRET, 'test', 'POST', path, hb, Date.now(), { audience: audienceOf(b.url()) });
      const r = await send('POST', path, { 'content-type': 'application/json', ...signed }, hb);
      expect(r.status).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ role: 'active' });
      expect(workerPids()).toEqual(before);
    });
  }
});
