import { bool, defineArea, httpUrl, int, namedTokens, oneOf, optionalInt, optionalPort, optionalStr, port, str } from '../define.js';

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
    standbyServes: bool('OMFLOW_BOOSTER_STANDBY_SERVES', {
      reload: true,
      doc: 'Let the standby proxy data-plane requests too instead of answering 503.',
      default: false,
    }),
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
    heartbeatTimeoutMs: int('OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS', {
      reload: true,
      doc: 'A server whose heartbeats stop for this long is down.',
      default: 3000,
      min: 100,
    }),
    healthIntervalMs: int('OMFLOW_BOOSTER_HEALTH_INTERVAL_MS', {
      reload: true,
      doc: 'Interval of active /healthz checks of a stable server.',
      default: 1000,
      min: 20,
    }),
    healthFastIntervalMs: int('OMFLOW_BOOSTER_HEALTH_FAST_INTERVAL_MS', {
      reload: true,
      doc: 'Interval of /healthz checks while a server is changing state.',
      default: 200,
      min: 10,
    }),
    healthTimeoutMs: int('OMFLOW_BOOSTER_HEALTH_TIMEOUT_MS', { reload: true, doc: 'Timeout of one /healthz or /readyz check.', default: 500, min: 10 }),
    readyIntervalMs: int('OMFLOW_BOOSTER_READY_INTERVAL_MS', {
      reload: true,
      doc: 'Interval of deep /readyz checks of a ready server; a server whose /readyz is failing is asked again at OMFLOW_BOOSTER_HEALTH_FAST_INTERVAL_MS.',
      default: 5000,
      min: 50,
    }),
    healthRise: int('OMFLOW_BOOSTER_HEALTH_RISE', {
      reload: true,
      doc: 'Consecutive passing checks (/healthz, and /readyz on its own) that bring a failed server back.',
      default: 2,
      min: 1,
    }),
    healthFall: int('OMFLOW_BOOSTER_HEALTH_FALL', {
      reload: true,
      doc: 'Consecutive failing checks (/healthz, and /readyz on its own) that take a server out.',
      default: 2,
      min: 1,
    }),
    ejectAfter5xx: int('OMFLOW_BOOSTER_EJECT_AFTER_5XX', {
      reload: true,
      doc: 'Consecutive 5xx answers (or connect errors count 5) that eject a server passively.',
      default: 5,
      min: 1,
    }),
    ejectMs: int('OMFLOW_BOOSTER_EJECT_MS', {
      reload: true,
      doc: 'How long a passively ejected server stays out (doubles on repeat, up to 8x).',
      default: 5000,
      min: 10,
    }),
    maxEjectedPercent: int('OMFLOW_BOOSTER_MAX_EJECTED_PERCENT', {
      reload: true,
      doc: 'Panic floor: never eject more than this share of the routable servers (never the last one).',
      default: 50,
      min: 0,
      max: 100,
    }),
    slowStartMs: int('OMFLOW_BOOSTER_SLOW_START_MS', {
      reload: true,
      doc: 'A new or recovered server ramps from 10% to its full share over this time (0: off).',
      default: 10000,
      min: 0,
    }),
    maxInflightPerServer: int('OMFLOW_BOOSTER_MAX_INFLIGHT_PER_SERVER', {
      reload: true,
      doc: 'Concurrent proxied requests per server; beyond it requests wait in the queue.',
      default: 256,
      min: 1,
    }),
    adaptiveLimit: bool('OMFLOW_BOOSTER_ADAPTIVE_LIMIT', {
      doc: "Learn each server's concurrency limit from its response times (requests waiting for its response headers; from 20, between 4 and OMFLOW_BOOSTER_MAX_INFLIGHT_PER_SERVER): when the median time to headers climbs past 1.5 × the no-load time (measured at start and every minute with at most 4 at once), the limit is cut and requests over it wait in the booster's queue instead of piling up in the server. false: only the fixed maximum.",
      default: true,
    }),
    queueSize: int('OMFLOW_BOOSTER_QUEUE_SIZE', { reload: true, doc: 'Requests that may wait for a free server slot; beyond it: 503.', default: 1000, min: 0 }),
    queueTimeoutMs: int('OMFLOW_BOOSTER_QUEUE_TIMEOUT_MS', {
      reload: true,
      doc: 'Longest wait in the queue before a 503 BOOSTER_ERR_QUEUE_TIMEOUT with Retry-After. While the queue holds an overload (no request left it within 50 ms for 500 ms), new waiters wait at most 500 ms.',
      default: 5000,
      min: 1,
    }),
    dbPressureMs: int('OMFLOW_BOOSTER_DB_PRESSURE_MS', {
      reload: true,
      doc: 'Admission under database pressure: when every routable server reports a database round-trip time (median query time) or a connection-pool wait at or above this (ms) in its heartbeat, the share of new work admitted is cut each second (by half, or by threshold/figure when smaller; it grows back by a quarter each second without pressure); the rest is answered 503 BOOSTER_ERR_DB_PRESSURE with Retry-After. Requests with an Idempotency-Key and /healthz, /readyz always pass. 0: off.',
      default: 500,
      min: 0,
    }),
    dbPressureRetryAfterS: int('OMFLOW_BOOSTER_DB_PRESSURE_RETRY_AFTER_S', {
      reload: true,
      doc: 'Retry-After (seconds) of a request shed under database pressure.',
      default: 2,
      min: 1,
      max: 120,
    }),
    connectTimeoutMs: int('OMFLOW_BOOSTER_CONNECT_TIMEOUT_MS', { reload: true, doc: 'Timeout of a TCP connect to a server.', default: 2000, min: 10 }),
    headersTimeoutMs: int('OMFLOW_BOOSTER_HEADERS_TIMEOUT_MS', {
      reload: true,
      doc: 'Timeout until a server sends response headers.',
      default: 60000,
      min: 10,
    }),
    idleTimeoutMs: int('OMFLOW_BOOSTER_IDLE_TIMEOUT_MS', {
      reload: true,
      doc: 'Longest pause between body chunks in either direction (0: none; SSE streams need 0 or a long value).',
      default: 300000,
      min: 0,
    }),
    keepAliveMs: int('OMFLOW_BOOSTER_KEEPALIVE_MS', { reload: true, doc: 'How long idle pooled connections to a server stay open.', default: 4000, min: 100 }),
    connectionsPerServer: int('OMFLOW_BOOSTER_CONNECTIONS_PER_SERVER', {
      reload: true,
      doc: 'Upper bound of pooled keep-alive connections per server.',
      default: 512,
      min: 1,
    }),
    maxAttempts: int('OMFLOW_BOOSTER_MAX_ATTEMPTS', {
      reload: true,
      doc: 'Attempts per request including the first (retries always go to another server).',
      default: 3,
      min: 1,
      max: 10,
    }),
    retryBudgetPercent: int('OMFLOW_BOOSTER_RETRY_BUDGET_PERCENT', {
      reload: true,
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
    bodyTimeoutMs: int('OMFLOW_BOOSTER_BODY_TIMEOUT_MS', {
      doc: 'Longest total time a client may take to send a request body, from its head to its last byte, whatever its pace (a body that trickles in forever holds a connection and a server slot): the request is then answered 408 BOOSTER_ERR_BODY_TIMEOUT and its connection closed. HTTP/1.1 (both paths) and HTTP/2. 0: no limit.',
      default: 300_000,
      min: 0,
    }),
    maxBodyBytes: int('OMFLOW_BOOSTER_MAX_BODY_BYTES', {
      doc: 'Largest request body the data plane passes to an app server (bytes): a larger Content-Length is answered 413 BOOSTER_ERR_BODY_TOO_LARGE at once, a chunked or HTTP/2 body when it grows past it. Above the largest upload the admin pages take (patches: 64 MiB). 0: no limit.',
      default: 128 * 1024 * 1024,
      min: 0,
    }),
    controlBodyLimit: int('OMFLOW_BOOSTER_CONTROL_BODY_LIMIT', {
      reload: true,
      doc: 'Largest accepted body on the /_booster/ control plane (bytes).',
      default: 65536,
      min: 1024,
    }),
    stepLeaseMs: int('OMFLOW_BOOSTER_STEP_LEASE_MS', {
      reload: true,
      doc: 'Lease granted with each dispatched step; a lapsed lease is handed out again.',
      default: 10000,
      min: 100,
    }),
    dispatchPollMs: int('OMFLOW_BOOSTER_DISPATCH_POLL_MS', {
      reload: true,
      doc: 'Longest sleep of the step dispatcher when no step was ready.',
      default: 25,
      min: 1,
    }),
    dispatchBatch: int('OMFLOW_BOOSTER_DISPATCH_BATCH', { reload: true, doc: 'Steps read per dispatcher round.', default: 100, min: 1 }),
    operatorToken: optionalStr('OMFLOW_BOOSTER_OPERATOR_TOKEN', {
      reload: true,
      doc: 'Bearer token that opens /_booster/status, /_booster/events and /_booster/metrics to operators and Prometheus (cluster members sign instead). At least 24 characters. Empty: only signed calls may read them. Prefer OMFLOW_BOOSTER_OPERATOR_TOKEN_FILE.',
      secret: true,
    }),
    operatorWriteTokens: namedTokens('OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS', {
      reload: true,
      doc: 'Operator tokens with the write scope, as name:token entries (commas or one per line in OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS_FILE; tokens at least 24 characters). Each opens the operator commands (omflow server drain|undrain|weight|retire, omflow switchover, omflow maintenance) and the reads; the event log records the name. OMFLOW_BOOSTER_OPERATOR_TOKEN stays read-only. Empty: only signed calls may run commands.',
      default: [],
      secret: true,
      minLength: 24,
    }),
    switchoverServeMs: int('OMFLOW_BOOSTER_SWITCHOVER_SERVE_MS', {
      doc: 'After omflow switchover the former active keeps proxying the requests that still reach it (stamped with the new epoch) for this long, so clients, VIP checks and load balancers move over without a failed request; then it answers as a standby.',
      default: 10000,
      min: 0,
    }),
    purgeIntervalMs: int('OMFLOW_BOOSTER_PURGE_INTERVAL_MS', {
      doc: 'Retention: how often the active booster purges what the OMFLOW_BOOSTER_RETAIN_* settings let go (first round one interval after it became active, at most a minute).',
      default: 3_600_000,
      min: 100,
    }),
    purgeBatch: int('OMFLOW_BOOSTER_PURGE_BATCH', {
      doc: 'Retention: rows deleted per statement (patch chunks: a tenth of it, they are up to 256 KiB each); batches follow each other with a short pause, and stop when the lease is not confirmed.',
      default: 1000,
      min: 1,
      max: 100_000,
    }),
    retainEventsDays: int('OMFLOW_BOOSTER_RETAIN_EVENTS_DAYS', {
      doc: 'Retention: days the event log (booster_events, `omflow status` and the admin Cluster page) keeps an entry. 0: forever.',
      default: 90,
      min: 0,
    }),
    retainStepsDays: int('OMFLOW_BOOSTER_RETAIN_STEPS_DAYS', {
      doc: 'Retention: days a finished step row (done, failed, cancelled) stays in the step queue. The ticket and its history keep what the step did. Quarantined steps are never purged. 0: forever.',
      default: 30,
      min: 0,
    }),
    retainLicenseAuditDays: int('OMFLOW_BOOSTER_RETAIN_LICENSE_AUDIT_DAYS', {
      doc: 'Retention: days the license audit (every license upload attempt) keeps a row. 0: forever.',
      default: 400,
      min: 0,
    }),
    retainPatches: int('OMFLOW_BOOSTER_RETAIN_PATCHES', {
      doc: 'Retention: patches (newest by sequence) whose chunks stay in the database; older ones keep their row (history) and lose their chunks, which agents never read again (a rollback returns to a release on the node). A patch of an open rollout keeps its chunks. 0: keep every patch.',
      default: 2,
      min: 0,
    }),
    tlsCertFile: optionalStr('OMFLOW_BOOSTER_TLS_CERT_FILE', {
      reload: true,
      doc: 'PEM certificate (chain allowed, leaf first). With OMFLOW_BOOSTER_TLS_KEY_FILE the booster port speaks HTTPS and HTTP/2; reloaded when the files change (and on reload, new paths included; turning TLS on or off needs a restart).',
    }),
    tlsKeyFile: optionalStr('OMFLOW_BOOSTER_TLS_KEY_FILE', { reload: true, doc: 'PEM private key of OMFLOW_BOOSTER_TLS_CERT_FILE.' }),
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
    accessLog: oneOf('OMFLOW_BOOSTER_ACCESS_LOG', ['off', 'json', 'combined'], {
      reload: true,
      doc: "Access log of the data plane, one line per request when it completes (every data-plane worker writes its own lines): json (one JSON object per line), combined (the NCSA combined format followed by the same fields as key=value) or off. Off by default: at load-balancer rates the journal would rate-limit and rotate away the booster's other messages, so give it OMFLOW_BOOSTER_ACCESS_LOG_FILE or a filter (see the operator guide).",
      default: 'off',
    }),
    accessLogFile: optionalStr('OMFLOW_BOOSTER_ACCESS_LOG_FILE', {
      reload: true,
      doc: 'File the access log is appended to (reopened on SIGUSR1, for logrotate). Empty: the log stream (standard output, the journal under systemd).',
    }),
    accessLogMinStatus: int('OMFLOW_BOOSTER_ACCESS_LOG_MIN_STATUS', {
      reload: true,
      doc: "Filter: requests answered with this status or above are always logged (500: server errors, including the booster's own 503s; 400: client errors too). A request that got no answer (the client went away) counts as 0 and matches. 0: no status filter.",
      default: 0,
      min: 0,
      max: 599,
    }),
    accessLogSlowMs: int('OMFLOW_BOOSTER_ACCESS_LOG_SLOW_MS', {
      reload: true,
      doc: 'Filter: requests that took at least this long (ms, from the request to the end of the answer) are always logged. 0: no duration filter.',
      default: 0,
      min: 0,
    }),
    accessLogSamplePercent: optionalInt('OMFLOW_BOOSTER_ACCESS_LOG_SAMPLE_PERCENT', {
      reload: true,
      doc: 'Share of the other requests (those no filter selected) that are logged, spread evenly. With OMFLOW_BOOSTER_ACCESS_LOG_MIN_STATUS=500 and 1: every error and 1 % of the rest.',
      defaultDoc: '100 without a filter, 0 with one',
      min: 0,
      max: 100,
    }),
    accessLogQuery: oneOf('OMFLOW_BOOSTER_ACCESS_LOG_QUERY', ['keep', 'redact', 'drop'], {
      reload: true,
      doc: 'What the access log shows of a query string: keep it, redact each value (names kept: ?token=[redacted]&page=[redacted]) or drop it.',
      default: 'redact',
    }),
  },
  check(values, report) {
    if (values.renewDeadlineMs >= values.leaseMs) report('OMFLOW_BOOSTER_RENEW_DEADLINE_MS', 'must be below OMFLOW_BOOSTER_LEASE_MS');
    if (values.operatorToken !== undefined && values.operatorToken.length < 24) report('OMFLOW_BOOSTER_OPERATOR_TOKEN', 'must be at least 24 characters');
    if (values.operatorToken !== undefined && values.operatorWriteTokens.some((t) => t.token === values.operatorToken))
      report('OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS', 'a write token must differ from OMFLOW_BOOSTER_OPERATOR_TOKEN (the read-only one)');
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
