import { bool, defineArea, httpUrl, int, optionalPort, optionalStr, port, str } from '../define.js';

/**
 * Keys of `omflow booster`. Owned by booster/; documented in docs/configuration.md.
 * Failover defaults: takeover after kill -9 ≈ leaseMs − renewMs/2 + fastPollMs/2 (median),
 * ≤ leaseMs + fastPollMs + one DB round trip (worst); see booster/README.md.
 */
export const boosterArea = defineArea({
  name: 'booster',
  title: 'Booster (omflow booster)',
  keys: {
    host: str('OMFLOW_BOOSTER_HOST', { doc: 'Address the booster listens on.', default: '0.0.0.0' }),
    port: port('OMFLOW_BOOSTER_PORT', { doc: 'Port of the data plane and the /_booster/ control plane.', default: 5169 }),
    advertiseUrl: httpUrl('OMFLOW_BOOSTER_ADVERTISE_URL', {
      doc: 'URL at which peers, servers and clients reach this booster (shown in X-Booster-Active). Defaults to http://<host>:<port>.',
    }),
    peerUrl: httpUrl('OMFLOW_BOOSTER_PEER_URL', { doc: 'URL of the other booster of the pair (probed for fast failure detection). Empty: no peer.' }),
    workers: int('OMFLOW_BOOSTER_WORKERS', {
      doc: 'Data-plane worker processes sharing the listening socket (0: one per core, at most 8; 1: a single process as before). With more than one, a primary process keeps leadership, health checks, step dispatch and /_booster/ (ADR 0010).',
      default: 0,
      min: 0,
      max: 64,
    }),
    standbyServes: bool('OMFLOW_BOOSTER_STANDBY_SERVES', { doc: 'Let the standby proxy data-plane requests too instead of answering 503.', default: false }),
    leaseMs: int('OMFLOW_BOOSTER_LEASE_MS', { doc: 'Leader lease length in the database.', default: 800, min: 200 }),
    renewMs: int('OMFLOW_BOOSTER_RENEW_MS', { doc: 'How often the active renews the leader lease.', default: 200, min: 20 }),
    renewDeadlineMs: int('OMFLOW_BOOSTER_RENEW_DEADLINE_MS', {
      doc: 'The active steps down when no renewal succeeded for this long (must be below OMFLOW_BOOSTER_LEASE_MS).',
      default: 550,
      min: 50,
    }),
    standbyPollMs: int('OMFLOW_BOOSTER_STANDBY_POLL_MS', { doc: 'How often the standby tries the lease while the peer answers.', default: 250, min: 10 }),
    fastPollMs: int('OMFLOW_BOOSTER_FAST_POLL_MS', {
      doc: 'How often the standby tries the lease while the peer does not answer (or no peer is configured).',
      default: 50,
      min: 5,
    }),
    probeMs: int('OMFLOW_BOOSTER_PROBE_MS', { doc: 'Interval of the standby probe of the peer /_booster/active.', default: 100, min: 10 }),
    probeTimeoutMs: int('OMFLOW_BOOSTER_PROBE_TIMEOUT_MS', { doc: 'Timeout of one peer probe.', default: 300, min: 10 }),
    heartbeatTimeoutMs: int('OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS', { doc: 'A server whose heartbeats stop for this long is down.', default: 3000, min: 100 }),
    healthIntervalMs: int('OMFLOW_BOOSTER_HEALTH_INTERVAL_MS', { doc: 'Interval of active /healthz checks of a stable server.', default: 1000, min: 20 }),
    healthFastIntervalMs: int('OMFLOW_BOOSTER_HEALTH_FAST_INTERVAL_MS', {
      doc: 'Interval of /healthz checks while a server is changing state.',
      default: 200,
      min: 10,
    }),
    healthTimeoutMs: int('OMFLOW_BOOSTER_HEALTH_TIMEOUT_MS', { doc: 'Timeout of one /healthz or /readyz check.', default: 500, min: 10 }),
    readyIntervalMs: int('OMFLOW_BOOSTER_READY_INTERVAL_MS', {
      doc: 'Interval of deep /readyz checks of a ready server; a server whose /readyz is failing is asked again at OMFLOW_BOOSTER_HEALTH_FAST_INTERVAL_MS.',
      default: 5000,
      min: 50,
    }),
    healthRise: int('OMFLOW_BOOSTER_HEALTH_RISE', {
      doc: 'Consecutive passing checks (/healthz, and /readyz on its own) that bring a failed server back.',
      default: 2,
      min: 1,
    }),
    healthFall: int('OMFLOW_BOOSTER_HEALTH_FALL', {
      doc: 'Consecutive failing checks (/healthz, and /readyz on its own) that take a server out.',
      default: 2,
      min: 1,
    }),
    ejectAfter5xx: int('OMFLOW_BOOSTER_EJECT_AFTER_5XX', {
      doc: 'Consecutive 5xx answers (or connect errors count 5) that eject a server passively.',
      default: 5,
      min: 1,
    }),
    ejectMs: int('OMFLOW_BOOSTER_EJECT_MS', { doc: 'How long a passively ejected server stays out (doubles on repeat, up to 8x).', default: 5000, min: 10 }),
    maxEjectedPercent: int('OMFLOW_BOOSTER_MAX_EJECTED_PERCENT', {
      doc: 'Panic floor: never eject more than this share of the routable servers (never the last one).',
      default: 50,
      min: 0,
      max: 100,
    }),
    slowStartMs: int('OMFLOW_BOOSTER_SLOW_START_MS', {
      doc: 'A new or recovered server ramps from 10% to its full share over this time (0: off).',
      default: 10000,
      min: 0,
    }),
    maxInflightPerServer: int('OMFLOW_BOOSTER_MAX_INFLIGHT_PER_SERVER', {
      doc: 'Concurrent proxied requests per server; beyond it requests wait in the queue.',
      default: 256,
      min: 1,
    }),
    adaptiveLimit: bool('OMFLOW_BOOSTER_ADAPTIVE_LIMIT', {
      doc: "Learn each server's concurrency limit from its response times (requests waiting for its response headers; from 20, between 4 and OMFLOW_BOOSTER_MAX_INFLIGHT_PER_SERVER): when the median time to headers climbs past 1.5 × the no-load time (measured at start and every minute with at most 4 at once), the limit is cut and requests over it wait in the booster's queue instead of piling up in the server. false: only the fixed maximum.",
      default: true,
    }),
    queueSize: int('OMFLOW_BOOSTER_QUEUE_SIZE', { doc: 'Requests that may wait for a free server slot; beyond it: 503.', default: 1000, min: 0 }),
    queueTimeoutMs: int('OMFLOW_BOOSTER_QUEUE_TIMEOUT_MS', {
      doc: 'Longest wait in the queue before a 503 BOOSTER_ERR_QUEUE_TIMEOUT with Retry-After. While the queue holds an overload (no request left it within 50 ms for 500 ms), new waiters wait at most 500 ms.',
      default: 5000,
      min: 1,
    }),
    dbPressureMs: int('OMFLOW_BOOSTER_DB_PRESSURE_MS', {
      doc: 'Admission under database pressure: when every routable server reports a database round-trip time (median query time) or a connection-pool wait at or above this (ms) in its heartbeat, the share of new work admitted is cut each second (by half, or by threshold/figure when smaller; it grows back by a quarter each second without pressure); the rest is answered 503 BOOSTER_ERR_DB_PRESSURE with Retry-After. Requests with an Idempotency-Key and /healthz, /readyz always pass. 0: off.',
      default: 500,
      min: 0,
    }),
    dbPressureRetryAfterS: int('OMFLOW_BOOSTER_DB_PRESSURE_RETRY_AFTER_S', {
      doc: 'Retry-After (seconds) of a request shed under database pressure.',
      default: 2,
      min: 1,
      max: 120,
    }),
    connectTimeoutMs: int('OMFLOW_BOOSTER_CONNECT_TIMEOUT_MS', { doc: 'Timeout of a TCP connect to a server.', default: 2000, min: 10 }),
    headersTimeoutMs: int('OMFLOW_BOOSTER_HEADERS_TIMEOUT_MS', { doc: 'Timeout until a server sends response headers.', default: 60000, min: 10 }),
    idleTimeoutMs: int('OMFLOW_BOOSTER_IDLE_TIMEOUT_MS', {
      doc: 'Longest pause between body chunks in either direction (0: none; SSE streams need 0 or a long value).',
      default: 300000,
      min: 0,
    }),
    keepAliveMs: int('OMFLOW_BOOSTER_KEEPALIVE_MS', { doc: 'How long idle pooled connections to a server stay open.', default: 4000, min: 100 }),
    connectionsPerServer: int('OMFLOW_BOOSTER_CONNECTIONS_PER_SERVER', {
      doc: 'Upper bound of pooled keep-alive connections per server.',
      default: 512,
      min: 1,
    }),
    maxAttempts: int('OMFLOW_BOOSTER_MAX_ATTEMPTS', {
      doc: 'Attempts per request including the first (retries always go to another server).',
      default: 3,
      min: 1,
      max: 10,
    }),
    retryBudgetPercent: int('OMFLOW_BOOSTER_RETRY_BUDGET_PERCENT', {
      doc: 'Retries may add at most this share of traffic (plus a small floor).',
      default: 20,
      min: 0,
      max: 100,
    }),
    leanHttp1: bool('OMFLOW_BOOSTER_LEAN_HTTP1', {
      doc: "Serve plain HTTP/1.1 keep-alive traffic on the lean path (ADR 0014): client connections read by Node's llhttp without node:http's request objects, and requests whose body is absent or held (see OMFLOW_BOOSTER_REPLAYABLE_BODY_BYTES) sent over a lean keep-alive pool. Upgrades, Expect, chunked or large uploads, pipelined requests and the /_booster/ API are handed to node:http on the same connection; TLS and HTTP/2 always use node:http. false: node:http and undici for everything.",
      default: true,
    }),
    replayableBodyBytes: int('OMFLOW_BOOSTER_REPLAYABLE_BODY_BYTES', {
      doc: 'Request bodies up to this size (with Content-Length) are held so a retry can resend them; larger bodies stream and are only retried when they were never read.',
      default: 65536,
      min: 0,
    }),
    controlBodyLimit: int('OMFLOW_BOOSTER_CONTROL_BODY_LIMIT', {
      doc: 'Largest accepted body on the /_booster/ control plane (bytes).',
      default: 65536,
      min: 1024,
    }),
    stepLeaseMs: int('OMFLOW_BOOSTER_STEP_LEASE_MS', {
      doc: 'Lease granted with each dispatched step; a lapsed lease is handed out again.',
      default: 10000,
      min: 100,
    }),
    dispatchPollMs: int('OMFLOW_BOOSTER_DISPATCH_POLL_MS', { doc: 'Longest sleep of the step dispatcher when no step was ready.', default: 25, min: 1 }),
    dispatchBatch: int('OMFLOW_BOOSTER_DISPATCH_BATCH', { doc: 'Steps read per dispatcher round.', default: 100, min: 1 }),
    operatorToken: optionalStr('OMFLOW_BOOSTER_OPERATOR_TOKEN', {
      doc: 'Bearer token that opens /_booster/status, /_booster/events and /_booster/metrics to operators and Prometheus (cluster members sign instead). At least 24 characters. Empty: only signed calls may read them. Prefer OMFLOW_BOOSTER_OPERATOR_TOKEN_FILE.',
      secret: true,
    }),
    tlsCertFile: optionalStr('OMFLOW_BOOSTER_TLS_CERT_FILE', {
      doc: 'PEM certificate (chain allowed, leaf first). With OMFLOW_BOOSTER_TLS_KEY_FILE the booster port speaks HTTPS and HTTP/2; reloaded on SIGHUP and when the file changes.',
    }),
    tlsKeyFile: optionalStr('OMFLOW_BOOSTER_TLS_KEY_FILE', { doc: 'PEM private key of OMFLOW_BOOSTER_TLS_CERT_FILE.' }),
    httpRedirectPort: optionalPort('OMFLOW_BOOSTER_HTTP_REDIRECT_PORT', {
      doc: 'Extra plain-HTTP port (e.g. 80) that only redirects to HTTPS. Needs the TLS certificate.',
    }),
    vip: optionalStr('OMFLOW_BOOSTER_VIP', {
      doc: 'Virtual IP with prefix (e.g. 10.0.0.10/24) that the active adds to OMFLOW_BOOSTER_VIP_INTERFACE and announces by gratuitous ARP, and removes before its lease can lapse. Needs CAP_NET_ADMIN and CAP_NET_RAW (see the operator guide). Empty: no VIP.',
    }),
    vipInterface: optionalStr('OMFLOW_BOOSTER_VIP_INTERFACE', { doc: 'Network interface that carries OMFLOW_BOOSTER_VIP (e.g. eth0).' }),
    vipArpCount: int('OMFLOW_BOOSTER_VIP_ARP_COUNT', {
      doc: 'Gratuitous ARP announcements sent after adding the VIP (200 ms apart).',
      default: 3,
      min: 1,
      max: 20,
    }),
  },
  check(values, report) {
    if (values.renewDeadlineMs >= values.leaseMs) report('OMFLOW_BOOSTER_RENEW_DEADLINE_MS', 'must be below OMFLOW_BOOSTER_LEASE_MS');
    if (values.operatorToken !== undefined && values.operatorToken.length < 24) report('OMFLOW_BOOSTER_OPERATOR_TOKEN', 'must be at least 24 characters');
    if (values.renewMs >= values.renewDeadlineMs) report('OMFLOW_BOOSTER_RENEW_MS', 'must be below OMFLOW_BOOSTER_RENEW_DEADLINE_MS');
    if (!values.tlsCertFile !== !values.tlsKeyFile)
      report(
        values.tlsCertFile ? 'OMFLOW_BOOSTER_TLS_KEY_FILE' : 'OMFLOW_BOOSTER_TLS_CERT_FILE',
        'OMFLOW_BOOSTER_TLS_CERT_FILE and OMFLOW_BOOSTER_TLS_KEY_FILE go together',
      );
    if (values.httpRedirectPort !== undefined && !values.tlsCertFile) report('OMFLOW_BOOSTER_HTTP_REDIRECT_PORT', 'needs OMFLOW_BOOSTER_TLS_CERT_FILE');
    if (values.vip !== undefined && !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(values.vip))
      report('OMFLOW_BOOSTER_VIP', 'must be an IPv4 address with prefix length, e.g. 10.0.0.10/24');
    if ((values.vip === undefined) !== (values.vipInterface === undefined))
      report(values.vip ? 'OMFLOW_BOOSTER_VIP_INTERFACE' : 'OMFLOW_BOOSTER_VIP', 'OMFLOW_BOOSTER_VIP and OMFLOW_BOOSTER_VIP_INTERFACE go together');
  },
});
