import { unwatchFile, watchFile } from 'node:fs';
import { createServer, type IncomingMessage, Server, type ServerOptions, type ServerResponse } from 'node:http';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from '../../common/log.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { attachLeanFront } from './http1/front-connection.js';
import { leanHttp1Available } from './http1/llhttp.js';
import { type CertificateFiles, type LoadedCertificate, loadCertificate } from './tls-certificate.js';

/**
 * The listeners of the booster port. Without a certificate: a plain node:http server, as before.
 * With one, the port speaks HTTPS (TLS 1.2+, ALPN h2 and http/1.1, HTTP/2 through the
 * node:http2 compat API) and still answers plain HTTP on the same port, but only for the
 * cluster API under /_booster/ (signed heartbeats, peer probes and agents use http:// URLs);
 * every other plain request is redirected to HTTPS. The first byte of a connection decides
 * (0x16 opens a TLS handshake). Certificates reload on SIGHUP and when the files change;
 * existing connections keep the context they were opened with.
 */
export interface ListenerOptions {
  tls?: CertificateFiles | null;
  /** Plain-HTTP port that only redirects to HTTPS (needs tls). */
  redirectPort?: number;
  host: string;
  log: Logger;
  server: ServerOptions;
  /** Poll interval of the certificate files (fs.watchFile follows renames and symlink swaps). */
  watchIntervalMs?: number;
  /** Plain HTTP/1.1 on the lean path (ADR 0014), bodies up to this size held; null: node:http only. TLS ports ignore it. */
  leanMaxHeldBodyBytes?: number | null;
  /** Longest time from a request's head to the end of its body on the lean path (0: none); node:http's is the proxy's. */
  bodyTimeoutMs?: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * Requests with an Expect header, which node:http would answer itself (100 Continue, or 417)
 * before the front router saw them: the router decides first, so a malformed request is refused
 * the same way on every path.
 */
export interface ExpectHandlers {
  /** Expect: 100-continue. */
  onCheckContinue: Handler;
  /** Any other expectation. */
  onCheckExpectation: Handler;
}

/** The listener: a node:http Server; with TLS it can also take a certificate from other files (a reload). */
export type Listener = Server & {
  reloadCertificate?: (files: CertificateFiles) => boolean;
  /** End of validity of the certificate being served (ms since the epoch). */
  certificateValidTo?: () => number;
};

/** Where a plain request on a TLS port or on the redirect port goes instead: same host, the TLS port. */
function redirectToHttps(req: IncomingMessage, res: ServerResponse, tlsPort: number): void {
  const hostHeader = req.headers.host ?? '';
  const host = /^\[[^\]]+\]/.exec(hostHeader)?.[0] ?? hostHeader.replace(/:\d+$/, '');
  if (!host) {
    res.writeHead(400, { 'content-type': 'text/plain', connection: 'close' });
    return void res.end('HTTPS required\n');
  }
  const location = `https://${host}${tlsPort === 443 ? '' : `:${tlsPort}`}${req.url ?? '/'}`;
  res.writeHead(308, { location, 'content-length': 0, connection: 'close' });
  res.end();
}

/**
 * A client's FIN after a whole request means "no more requests", not "cancel this one": the answer
 * goes out, then the connection closes (as HAProxy, nginx and the lean path do). node:http's
 * default drops the request in flight. A body cut by the FIN is still a parse error (400).
 */
function answerHalfClosed(server: Server): Server {
  // Public since Node 18 (http.Server), not in @types/node.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  return server;
}

/** Concurrent streams one HTTP/2 client connection may have open. */
export const H2_MAX_CONCURRENT_STREAMS = 128;

/**
 * Builds the listener of the booster port. The answer is always a node:http Server (listen,
 * address, close, closeIdleConnections, closeAllConnections, 'upgrade' and 'clientError' and
 * `timeout` behave as before); with TLS it also owns the secure server, the redirect listener,
 * the file watch and the SIGHUP handler, and closing it closes them.
 */
export function createListener(opts: ListenerOptions, onRequest: Handler, expect?: ExpectHandlers): Listener {
  if (!opts.tls) {
    if (opts.redirectPort !== undefined) opts.log.warn('OMFLOW_BOOSTER_HTTP_REDIRECT_PORT ignored: no TLS certificate configured');
    const server = answerHalfClosed(createServer(opts.server, onRequest));
    if (expect) {
      server.on('checkContinue', expect.onCheckContinue);
      server.on('checkExpectation', expect.onCheckExpectation);
    }
    if (opts.leanMaxHeldBodyBytes != null) {
      if (!leanHttp1Available)
        opts.log.warn('OMFLOW_BOOSTER_LEAN_HTTP1 ignored: this Node exposes no llhttp parser (process.binding or _http_common); node:http serves everything');
      else
        attachLeanFront(server, {
          onRequest: onRequest as never,
          handsOver: (url) => url.startsWith(BOOSTER_PATH.prefix),
          maxHeldBodyBytes: opts.leanMaxHeldBodyBytes,
          keepAliveTimeoutMs: opts.server.keepAliveTimeout ?? 5000,
          headersTimeoutMs: opts.server.headersTimeout || 30_000,
          bodyTimeoutMs: opts.bodyTimeoutMs ?? 0,
        });
    }
    return server;
  }
  let tls = opts.tls;
  const log = opts.log;
  let current = loadCertificate(tls);
  log.info({ subject: current.subject, validTo: current.validTo, fingerprint256: current.fingerprint256 }, 'TLS certificate loaded');

  let tlsPort = 0;
  // Cluster members speak plain HTTP to /_booster/ (signed); users are sent to HTTPS.
  const plainOnly = (handler: Handler) => (req: IncomingMessage, res: ServerResponse) =>
    (req.url ?? '/').startsWith(BOOSTER_PATH.prefix) ? handler(req, res) : redirectToHttps(req, res, tlsPort);
  const plain = answerHalfClosed(createServer(opts.server, plainOnly(onRequest)));
  if (expect) {
    plain.on('checkContinue', plainOnly(expect.onCheckContinue));
    plain.on('checkExpectation', plainOnly(expect.onCheckExpectation));
  }
  const secure = createSecureServer(
    // Node's default lets one HTTP/2 connection open 2^32-1 concurrent streams; a client on the
    // users' network gets what nginx and HAProxy allow (128 and 100), the rest waits in its queue.
    { ...current.options, allowHTTP1: true, settings: { maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS } },
    onRequest as unknown as (req: Http2ServerRequest, res: Http2ServerResponse) => void,
  );
  // HTTP/1.1 over TLS is served by node:http's machinery inside the secure server; same timeouts.
  Object.assign(secure, {
    keepAliveTimeout: opts.server.keepAliveTimeout,
    requestTimeout: opts.server.requestTimeout,
    headersTimeout: opts.server.headersTimeout,
  });
  const sessions = new Set<Http2Session>();
  secure.on('session', (s: Http2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => {});
  });
  secure.on('upgrade', (req, socket, head) => plain.emit('upgrade', req, socket, head));
  if (expect) {
    secure.on('checkContinue', expect.onCheckContinue as never);
    secure.on('checkExpectation', expect.onCheckExpectation as never);
  }
  secure.on('clientError', (err, socket) => plain.emit('clientError', err, socket));
  secure.on('tlsClientError', (err) => log.debug({ err }, 'TLS handshake failed'));

  // Plain plus secure on one port: the net server accepts, the first byte picks the protocol.
  const httpConnection = plain.listeners('connection')[0] as (s: Socket) => void;
  plain.removeAllListeners('connection');
  const firstByteMs = opts.server.headersTimeout || 30_000;
  plain.on('connection', (socket: Socket) => {
    // A connection that never says anything does not hold a socket forever.
    const silent = () => socket.destroy();
    socket.setTimeout(firstByteMs, silent);
    socket.once('data', (first: Buffer) => {
      socket.setTimeout(0);
      socket.off('timeout', silent);
      socket.pause();
      socket.unshift(first);
      if (first[0] === 0x16) {
        // Accepted by node:http, the socket allows half-open connections; under TLS a client's FIN
        // would then close nothing, and an HTTP/2 session (its streams, their requests) would
        // outlive the client that went away. A TLS server's own sockets close on FIN.
        socket.allowHalfOpen = false;
        secure.emit('connection', socket);
      } else httpConnection.call(plain, socket);
      process.nextTick(() => socket.resume());
    });
    socket.on('error', () => socket.destroy());
  });

  // `timeout` reaches both kinds of connection.
  let timeout = 0;
  Object.defineProperty(plain, 'timeout', {
    get: () => timeout,
    set: (v: number) => {
      timeout = v;
      (secure as unknown as { timeout: number }).timeout = v;
    },
    configurable: true,
  });

  const closeIdle = plain.closeIdleConnections.bind(plain);
  const closeAll = plain.closeAllConnections.bind(plain);
  plain.closeIdleConnections = () => {
    closeIdle();
    Server.prototype.closeIdleConnections.call(secure);
    // GOAWAY: no new streams, open ones finish, then the session closes.
    for (const s of sessions) if (!s.closed) s.close();
  };
  plain.closeAllConnections = () => {
    closeAll();
    Server.prototype.closeAllConnections.call(secure);
    for (const s of sessions) s.destroy();
  };

  const reload = (why: string): boolean => {
    let next: LoadedCertificate;
    try {
      next = loadCertificate(tls);
    } catch (err) {
      log.error(
        { err, why, certFile: tls.certFile, keyFile: tls.keyFile, serving: current.fingerprint256 },
        'new TLS certificate refused; the previous one keeps serving',
      );
      return false;
    }
    if (next.fingerprint256 === current.fingerprint256 && next.options.key!.toString() === current.options.key!.toString()) return true;
    secure.setSecureContext({ ...next.options });
    current = next;
    log.info({ why, subject: next.subject, validTo: next.validTo, fingerprint256: next.fingerprint256 }, 'TLS certificate reloaded');
    return true;
  };
  const onHup = () => void reload('SIGHUP');
  const listener = plain as Listener;
  listener.certificateValidTo = () => Date.parse(current.validTo);
  /** New paths (a reload of the configuration): watched from now on; the previous certificate keeps serving if they fail. */
  listener.reloadCertificate = (files) => {
    if (files.certFile !== tls.certFile || files.keyFile !== tls.keyFile) {
      if (!plain.listening) return false;
      unwatchFile(tls.certFile, onFileChange);
      unwatchFile(tls.keyFile, onFileChange);
      tls = files;
      const interval = opts.watchIntervalMs ?? 1000;
      watchFile(tls.certFile, { interval, persistent: false }, onFileChange);
      watchFile(tls.keyFile, { interval, persistent: false }, onFileChange);
    }
    return reload('configuration reloaded');
  };
  // A cert and its key are rarely replaced in the same instant: wait for both files to settle.
  let settle: NodeJS.Timeout | null = null;
  const onFileChange = () => {
    if (settle) clearTimeout(settle);
    settle = setTimeout(() => {
      settle = null;
      reload('file changed');
    }, 300);
  };

  let redirect: Server | null = null;
  plain.on('listening', () => {
    tlsPort = (plain.address() as AddressInfo).port;
    // Lets the secure server track its HTTP/1.1 connections (idle close, header timeouts).
    secure.emit('listening');
    process.on('SIGHUP', onHup);
    const interval = opts.watchIntervalMs ?? 1000;
    watchFile(tls.certFile, { interval, persistent: false }, onFileChange);
    watchFile(tls.keyFile, { interval, persistent: false }, onFileChange);
    if (opts.redirectPort !== undefined) {
      redirect = createServer((req, res) => redirectToHttps(req, res, tlsPort));
      redirect.on('error', (err) => log.error({ err, port: opts.redirectPort }, 'the HTTP-to-HTTPS redirect listener failed'));
      redirect.listen(opts.redirectPort, opts.host, () => log.info({ port: (redirect!.address() as AddressInfo).port }, 'redirecting plain HTTP to HTTPS'));
    }
  });

  const close = plain.close.bind(plain);
  plain.close = (cb?: (err?: Error) => void) => {
    process.off('SIGHUP', onHup);
    unwatchFile(tls.certFile, onFileChange);
    unwatchFile(tls.keyFile, onFileChange);
    if (settle) clearTimeout(settle);
    if (redirect) {
      redirect.close();
      redirect.closeAllConnections();
      redirect = null;
    }
    secure.close(() => {});
    return close(cb);
  };
  return listener;
}
