import { mkdtempSync, rmSync } from 'node:fs';
import type { Server, ServerResponse } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createListener } from '../../../booster/data-plane/listener.js';
import { selfSignedCert } from '../../helpers/certs.js';
import { waitFor } from '../../helpers/poll.js';
import { silentLog } from '../fixtures.js';

/**
 * Clients that go away without a word, on the TLS port (plain and TLS on one port: the first byte
 * picks the protocol): the connection, its HTTP/2 session and the requests on it must go with
 * them. Before, a socket node:http accepted kept allowing half-open connections under TLS, so a
 * client's FIN closed nothing: every abrupt HTTP/2 disconnect left a session and its requests
 * until the idle timeout, and a graceful stop waited out its whole drain time.
 */
let dir: string;
let server: Server;
let port: number;
const open = new Set<ServerResponse>();
let closed = 0;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'omflow-abrupt-'));
  const tls = selfSignedCert(dir, 'localhost', 2);
  // A handler that never answers on its own: a request stays open until its client is gone.
  server = createListener({ tls, host: '127.0.0.1', log: silentLog, server: { keepAliveTimeout: 5000 }, watchIntervalMs: 3_600_000 }, (req, res) => {
    open.add(res);
    res.on('close', () => {
      open.delete(res);
      closed++;
    });
    req.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as { port: number }).port;
});
afterAll(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const connections = () => new Promise<number>((r) => server.getConnections((_e, n) => r(n)));

describe('clients that vanish leave nothing behind on the TLS port', () => {
  it('an HTTP/2 client that drops its connection with requests open: the session, its requests and the socket go', async () => {
    for (let round = 0; round < 3; round++) {
      const session = h2connect(`https://127.0.0.1:${port}`, { rejectUnauthorized: false });
      session.on('error', () => {});
      const streams = Array.from({ length: 4 }, (_, i) => {
        const st = session.request({ ':method': 'POST', ':path': `/open-${i}` }, { endStream: false });
        st.on('error', () => {});
        st.write('part of a body');
        return st;
      });
      await waitFor(() => open.size === 4, { what: 'four requests open at the server' });
      expect(streams.length).toBe(4);
      session.destroy();
      await waitFor(async () => open.size === 0 && (await connections()) === 0, { what: 'the session and its requests gone with the client', timeoutMs: 5000 });
    }
    expect(closed).toBeGreaterThanOrEqual(12);
  });

  it('HTTP/1.1 over TLS and plain HTTP/1.1 with a request open: the socket goes', async () => {
    const tls = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
    tls.on('error', () => {});
    await new Promise((r) => tls.once('secureConnect', r));
    tls.write('POST /open HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nsome');
    await waitFor(() => open.size === 1, { what: 'the request open at the server' });
    tls.destroy();
    await waitFor(async () => open.size === 0 && (await connections()) === 0, { what: 'the TLS connection gone', timeoutMs: 5000 });
    const plain = netConnect(port, '127.0.0.1');
    plain.on('error', () => {});
    plain.write('POST /_booster/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nsome');
    await waitFor(() => open.size === 1, { what: 'the plain request open at the server' });
    plain.destroy();
    await waitFor(async () => open.size === 0 && (await connections()) === 0, { what: 'the plain connection gone', timeoutMs: 5000 });
  });

  it('a client that goes away in the middle of the TLS handshake: the socket goes', async () => {
    for (let i = 0; i < 5; i++) {
      const c = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['h2'] });
      c.on('error', () => {});
      // The ClientHello is out; the client leaves before the handshake ends.
      await new Promise((r) => setImmediate(r));
      c.destroy();
    }
    await waitFor(async () => (await connections()) === 0, { what: 'no connection left after aborted handshakes', timeoutMs: 5000 });
  });
});
