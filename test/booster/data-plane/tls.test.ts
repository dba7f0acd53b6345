import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { type ClientHttp2Session, connect as h2connect } from 'node:http2';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../../booster/booster.js';
import { createListener, H2_MAX_CONCURRENT_STREAMS } from '../../../booster/data-plane/listener.js';
import { createLogger } from '../../../common/log.js';
import { createClusterClient } from '../../../common/protocol/cluster-client.js';
import { BOOSTER_PATH } from '../../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../../helpers/db.js';
import { boosterConfig, type FixtureServer, freePort, SECRET, silentLog, startFixtureServer, until } from '../fixtures.js';

/** HTTPS, HTTP/2 and certificate reloads of an in-process booster, with certificates made by openssl. */
let tdb: TestDatabase;
let dir: string;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  tdb = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
  dir = mkdtempSync(join(tmpdir(), 'omflow-tls-'));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  await tdb.knex('servers').del();
  await tdb.knex('booster_lease').update({ holder: null, expires_at: new Date(0) });
});
afterAll(async () => {
  await tdb?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Pem {
  cert: string;
  key: string;
}

let certSeq = 0;
/** A fresh self-signed P-256 certificate for localhost / 127.0.0.1. */
function makeCert(cn = 'localhost'): Pem {
  const base = join(dir, `gen-${++certSeq}`);
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '2',
      '-keyout',
      `${base}.key`,
      '-out',
      `${base}.crt`,
      '-subj',
      `/CN=${cn}`,
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { cert: readFileSync(`${base}.crt`, 'utf8'), key: readFileSync(`${base}.key`, 'utf8') };
}

/** Replaces a file the way certbot and config tools do: write aside, rename over. */
function replace(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

function install(name: string, pem: Pem): { certFile: string; keyFile: string } {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  replace(certFile, pem.cert);
  replace(keyFile, pem.key);
  return { certFile, keyFile };
}

/** Log lines as objects (to see what an operator would read). */
function captureLog() {
  const lines: { level: number; msg: string; err?: { code?: string } }[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, log: createLogger({ name: 'tls-test', level: 'info', destination }) };
}

async function tlsBooster(id: string, files: { certFile: string; keyFile: string }, extra: Record<string, string | number> = {}, log = silentLog) {
  const b = createBooster({
    // A long lease: TLS handshakes in a loop load a shared 2-core box, and a step-down is not what is tested here.
    config: boosterConfig(id, {
      OMFLOW_BOOSTER_TLS_CERT_FILE: files.certFile,
      OMFLOW_BOOSTER_TLS_KEY_FILE: files.keyFile,
      OMFLOW_BOOSTER_LEASE_MS: 10_000,
      OMFLOW_BOOSTER_RENEW_DEADLINE_MS: 8000,
      OMFLOW_BOOSTER_RENEW_MS: 500,
      ...extra,
    }),
    db: tdb.db,
    log,
  });
  const base = await b.listen();
  cleanups.push(() => b.close());
  await until(() => b.role() === 'active', 'booster active');
  const port = Number(new URL(base).port);
  return Object.assign(b, { base, port, https: `https://127.0.0.1:${port}` });
}

async function servers(b: Booster & { base: string }, ids: string[]): Promise<FixtureServer[]> {
  const out: FixtureServer[] = [];
  // Servers heartbeat over plain HTTP to /_booster/ on the same port, as real ones do.
  for (const id of ids) {
    const f = await startFixtureServer({ id, boosters: [b.base], knex: tdb.knex });
    cleanups.push(() => f.stop());
    out.push(f);
  }
  for (const f of out) await f.heartbeatNow();
  await until(() => b.table.routable.length >= ids.length, 'servers routable');
  return out;
}

/** HTTPS/1.1 on a new connection; returns the status, body and the fingerprint the server showed. */
function httpsGet(
  url: string,
  ca: string | string[],
  path = '/',
  keepAlive = false,
): Promise<{ status: number; body: string; fingerprint: string; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    const options: RequestOptions & { ALPNProtocols: string[] } = {
      ca,
      agent: false,
      ALPNProtocols: ['http/1.1'],
      headers: keepAlive ? {} : { connection: 'close' },
    };
    const req = httpsRequest(url + path, options, (res) => {
      const sock = res.socket as import('node:tls').TLSSocket;
      const fingerprint = sock.getPeerCertificate().fingerprint256;
      const alpn = sock.alpnProtocol;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, fingerprint, alpn }));
    });
    req.on('error', reject);
    req.end();
  });
}

function h2Request(
  session: ClientHttp2Session,
  path: string,
  opts: { method?: string; body?: Buffer[] } = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ':path': path, ':method': opts.method ?? 'GET' }, { endStream: !opts.body });
    let headers: Record<string, unknown> = {};
    let body = '';
    s.setEncoding('utf8');
    s.on('response', (h) => (headers = h));
    s.on('data', (d: string) => (body += d));
    s.on('end', () => resolve({ status: Number(headers[':status']), headers, body }));
    s.on('error', reject);
    if (opts.body) {
      // No content-length: the body streams in DATA frames only.
      for (const c of opts.body) s.write(c);
      s.end();
    }
  });
}

function fingerprintOf(pem: Pem): string {
  return new X509Certificate(pem.cert).fingerprint256;
}

describe('booster over TLS', () => {
  it('serves HTTPS/1.1 and HTTP/2 (bodies, SSE, WebSocket), keeps plain /_booster/ for the cluster and redirects the rest', async () => {
    const pem = makeCert();
    const redirectPort = await freePort();
    const b = await tlsBooster('tls-basic', install('basic', pem), { OMFLOW_BOOSTER_HTTP_REDIRECT_PORT: redirectPort });
    const [s] = await servers(b, ['t1']);

    const h1 = await httpsGet(b.https, pem.cert, '/hello');
    expect(h1).toMatchObject({ status: 200, alpn: 'http/1.1' });
    expect(JSON.parse(h1.body)).toMatchObject({ server: 't1' });
    // The health checker's probes land on the same server: pick the proxied request itself.
    expect(s.seen.findLast((r) => r.url === '/hello')!.headers['x-forwarded-proto']).toBe('https');

    const session = h2connect(b.https, { ca: pem.cert });
    cleanups.push(async () => session.close());
    const g = await h2Request(session, '/h2?x=1');
    expect(g.status).toBe(200);
    expect(g.headers['x-booster-upstream']).toBe('t1');
    const seen = s.seen.findLast((r) => r.url === '/h2?x=1')!;
    expect(seen).toMatchObject({ method: 'GET', url: '/h2?x=1' });
    expect(seen.headers).toMatchObject({ 'x-forwarded-proto': 'https', host: `127.0.0.1:${b.port}`, 'x-forwarded-host': `127.0.0.1:${b.port}` });
    expect(Object.keys(seen.headers).some((k) => k.startsWith(':'))).toBe(false);

    const chunk = Buffer.alloc(100_000, 1);
    const up = await h2Request(session, '/upload', { method: 'POST', body: [chunk, chunk, chunk] });
    expect(up.status).toBe(200);
    expect(JSON.parse(up.body)).toMatchObject({ bytes: 300_000 });
    const small = await h2Request(session, '/echo', { method: 'POST', body: [Buffer.from('abc')] });
    expect(JSON.parse(small.body)).toMatchObject({ bytes: 3 });

    // SSE over h2: the first event arrives while the server holds the stream open.
    const first = await new Promise<string>((resolve, reject) => {
      const st = session.request({ ':path': '/sse' });
      st.setEncoding('utf8');
      st.once('data', (d: string) => {
        resolve(d);
        s.release();
        st.resume();
      });
      st.on('error', reject);
    });
    expect(first).toContain('data: first');

    // WebSocket stays HTTP/1.1 (ALPN http/1.1) over TLS.
    const echoed = await new Promise<string>((resolve, reject) => {
      const sock = tlsConnect({ host: '127.0.0.1', port: b.port, ca: pem.cert, servername: 'localhost', ALPNProtocols: ['http/1.1'] }, () => {
        sock.write(`GET /ws HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n`);
      });
      let buf = '';
      sock.on('data', (d) => {
        buf += d.toString();
        if (buf.includes('\r\n\r\n') && !buf.includes('ping')) sock.write('ping');
        if (buf.includes('ping')) {
          sock.destroy();
          resolve(buf);
        }
      });
      sock.on('error', reject);
    });
    expect(echoed).toMatch(/^HTTP\/1.1 101/);

    // Plain HTTP on the TLS port: the cluster API answers, user paths are redirected.
    const plain = (url: string) =>
      new Promise<{ status: number; location?: string }>((resolve, reject) => {
        httpRequest(url, { headers: { host: 'omflow.example:9999' } }, (res) => {
          res.resume();
          resolve({ status: res.statusCode ?? 0, location: res.headers.location });
        })
          .on('error', reject)
          .end();
      });
    expect((await plain(`${b.base}/_booster/active`)).status).toBe(200);
    expect(await plain(`${b.base}/forms?a=1`)).toEqual({ status: 308, location: `https://omflow.example:${b.port}/forms?a=1` });
    expect(await plain(`http://127.0.0.1:${redirectPort}/x`)).toEqual({ status: 308, location: `https://omflow.example:${b.port}/x` });
  });

  it('swaps the certificate under load (file change and SIGHUP) with no failed request, and refuses a broken one', async () => {
    const first = makeCert('first');
    const files = install('swap', first);
    const { lines, log } = captureLog();
    const b = await tlsBooster('tls-swap', files, {}, log);
    await servers(b, ['w1', 'w2']);
    const second = makeCert('second');
    const third = makeCert('third');
    const cas = [first.cert, second.cert, third.cert];

    // Load: new HTTPS connections, keep-alive HTTPS and one long-lived h2 session, all the time.
    let stop = false;
    let ok = 0;
    const failures: unknown[] = [];
    const seenPrints = new Set<string>();
    const session = h2connect(b.https, { ca: cas });
    cleanups.push(async () => session.close());
    const loops = [
      (async () => {
        while (!stop) {
          try {
            const r = await httpsGet(b.https, cas, '/fresh');
            seenPrints.add(r.fingerprint);
            if (r.status === 200) ok++;
            else failures.push(`${r.status} ${r.body}`);
          } catch (err) {
            failures.push(err);
          }
        }
      })(),
      ...[1, 2].map(async () => {
        while (!stop) {
          try {
            const r = await h2Request(session, '/h2');
            if (r.status === 200) ok++;
            else failures.push(`${r.status} ${r.body}`);
          } catch (err) {
            failures.push(err);
          }
        }
      }),
    ];
    const served = async () => (await httpsGet(b.https, cas, '/which')).fingerprint;

    await until(() => ok > 20, 'load running', 20_000);
    expect(await served()).toBe(fingerprintOf(first));

    // 1. The files change (renamed over, like certbot): picked up without a restart.
    install('swap', second);
    await until(async () => (await served()) === fingerprintOf(second), 'second certificate served', 20_000, 100);

    // 2. A broken replacement (key of another certificate) is refused; the second keeps serving.
    replace(files.keyFile, third.key);
    await until(() => lines.some((l) => l.msg.startsWith('new TLS certificate refused')), 'refusal logged', 20_000, 50);
    const refusal = lines.find((l) => l.msg.startsWith('new TLS certificate refused'))!;
    expect(refusal.level).toBe(50);
    expect(refusal.err?.code).toBe('BOOSTER_ERR_TLS_CERTIFICATE');
    expect(await served()).toBe(fingerprintOf(second));

    // 3. Fixed and announced with SIGHUP (the file watch may see it too; either reloads).
    replace(files.certFile, third.cert);
    process.kill(process.pid, 'SIGHUP');
    await until(async () => (await served()) === fingerprintOf(third), 'third certificate served', 20_000, 100);

    const before = ok;
    await until(() => ok > before + 20, 'load still running', 20_000);
    stop = true;
    await Promise.all(loops);
    expect(failures).toEqual([]);
    expect(seenPrints.size).toBeGreaterThanOrEqual(2);
  });

  it('accepts the operator token over HTTPS and HTTP/2 only; plain HTTP on the same port keeps signed cluster calls; h2 streams are bounded', async () => {
    const pem = makeCert();
    const token = 'operator-token-tls-0123456789abcdef';
    const b = await tlsBooster('tls-token', install('token', pem), { OMFLOW_BOOSTER_OPERATOR_TOKEN: token });
    const auth = { authorization: `Bearer ${token}` };
    // In clear on the TLS port: refused, with the reason, and nothing about the cluster.
    const plain = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      httpRequest(`${b.base}${BOOSTER_PATH.status}`, { headers: auth }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
        .on('error', reject)
        .end();
    });
    expect(plain.status).toBe(401);
    expect(JSON.parse(plain.body)).toMatchObject({ code: 'COMMON_ERR_OPERATOR_AUTH', details: { reason: 'plain-http' } });
    expect(plain.body).not.toContain('tls-token');
    // Signed, the same plain request is a cluster call and is answered.
    const signed = await createClusterClient({ secret: SECRET, nodeId: 'test' }).call(b.base, 'GET', BOOSTER_PATH.status);
    expect(signed.status).toBe(200);
    // Over HTTPS/1.1 and HTTP/2 the token works.
    const overHttps = await new Promise<number>((resolve, reject) => {
      httpsRequest(`${b.https}${BOOSTER_PATH.status}`, { ca: pem.cert, agent: false, headers: auth }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', reject)
        .end();
    });
    expect(overHttps).toBe(200);
    const session = h2connect(b.https, { ca: pem.cert });
    cleanups.push(async () => session.close());
    await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
    // An HTTP/2 client may not open more than this many streams at once (Node's default is 2^32-1).
    expect(session.remoteSettings.maxConcurrentStreams).toBe(H2_MAX_CONCURRENT_STREAMS);
    const s = session.request({ ':path': BOOSTER_PATH.metrics, ...auth });
    const status = await new Promise<number>((resolve, reject) => {
      s.on('response', (h) => resolve(Number(h[':status'])));
      s.on('error', reject);
    });
    s.resume();
    expect(status).toBe(200);
  });

  it('refuses to start with a key that does not match its certificate', async () => {
    const a = makeCert();
    const c = makeCert();
    const files = install('mismatch', { cert: a.cert, key: c.key });
    expect(() =>
      createBooster({
        config: boosterConfig('tls-bad', { OMFLOW_BOOSTER_TLS_CERT_FILE: files.certFile, OMFLOW_BOOSTER_TLS_KEY_FILE: files.keyFile }),
        db: tdb.db,
        log: silentLog,
      }),
    ).toThrow(expect.objectContaining({ code: 'BOOSTER_ERR_TLS_CERTIFICATE' }));
  });

  it('reloads on SIGHUP alone and closes its redirect listener with the port', async () => {
    const a = makeCert('hup-a');
    const files = install('hup', a);
    const server = createListener({ tls: files, host: '127.0.0.1', redirectPort: 0, log: silentLog, server: {}, watchIntervalMs: 3_600_000 }, (_req, res) =>
      res.end('ok'),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as import('node:net').AddressInfo).port;
    cleanups.push(() => new Promise((r) => server.close(() => r(undefined))));
    const z = makeCert('hup-z');
    install('hup', z);
    const url = `https://127.0.0.1:${port}`;
    expect((await httpsGet(url, [a.cert, z.cert])).fingerprint).toBe(fingerprintOf(a));
    process.kill(process.pid, 'SIGHUP');
    await until(async () => (await httpsGet(url, [a.cert, z.cert])).fingerprint === fingerprintOf(z), 'reloaded on SIGHUP', 10_000, 50);
  });
});
