import { defineErrors } from '../common/errors.js';

/** Stable codes of the booster. Add, never renumber or reuse; docs/errors.md is generated from here. */
export const BoosterErrors = defineErrors({
  BOOSTER_ERR_NO_SERVER: {
    status: 503,
    message: 'No healthy app server is available',
    hint: 'Check `omflow status`: every server is down, draining or ejected. Start or undrain a server.',
  },
  BOOSTER_ERR_STANDBY: {
    status: 503,
    message: 'This booster is the standby; send requests to the active booster',
    hint: 'Point the VIP or DNS at the booster whose /_booster/active answers 200 (see X-Booster-Active).',
  },
  BOOSTER_ERR_INTERNAL_PATH: {
    status: 403,
    message: 'Paths under /_internal/ are reserved for cluster members and are not proxied',
    hint: 'Cluster members call app servers directly; clients never need /_internal/.',
  },
  BOOSTER_ERR_OVERLOADED: {
    status: 503,
    message: 'Every server is at its in-flight limit and the wait queue is full',
    hint: 'Transient overload: retry after Retry-After. Add servers or raise OMFLOW_BOOSTER_MAX_INFLIGHT_PER_SERVER / OMFLOW_BOOSTER_QUEUE_SIZE.',
  },
  BOOSTER_ERR_QUEUE_TIMEOUT: {
    status: 503,
    message: 'No server slot became free within the queue timeout',
    hint: "Transient overload: retry after Retry-After. Requests over a server's concurrency limit wait in the booster: up to OMFLOW_BOOSTER_QUEUE_TIMEOUT_MS, or 500 ms while the queue holds an overload (ADR 0013). Add servers if it persists.",
  },
  BOOSTER_ERR_DB_PRESSURE: {
    status: 503,
    message: 'The database is saturated; new work is shed until it recovers',
    hint: 'Transient: retry after Retry-After (an Idempotency-Key retry is always let through). The app servers report database round-trip time and pool wait above OMFLOW_BOOSTER_DB_PRESSURE_MS; see `omflow status` and the database.',
  },
  BOOSTER_ERR_UPSTREAM: {
    status: 502,
    message: 'The app server failed to answer the request',
    hint: 'The request may or may not have been applied by the server unless it carried an Idempotency-Key; see the booster log and `omflow status`.',
  },
  BOOSTER_ERR_UPSTREAM_TIMEOUT: {
    status: 504,
    message: 'The app server did not answer in time',
    hint: 'See OMFLOW_BOOSTER_HEADERS_TIMEOUT_MS and the server log.',
  },
  BOOSTER_ERR_NOT_FOUND: {
    status: 404,
    message: 'Unknown booster control path',
    hint: 'See booster/README.md for the /_booster/ API.',
  },
  BOOSTER_ERR_UNKNOWN_SERVER: {
    status: 404,
    message: 'No server with this id is registered',
    hint: "Use the id shown by `omflow status` (the server's OMFLOW_NODE_ID).",
  },
  BOOSTER_ERR_TLS_CERTIFICATE: {
    status: 500,
    message: 'The TLS certificate or key cannot be used',
    hint: 'Check OMFLOW_BOOSTER_TLS_CERT_FILE / OMFLOW_BOOSTER_TLS_KEY_FILE: readable PEM files, the key belongs to the certificate, the certificate is within its validity. On a reload the previous certificate keeps serving.',
  },
  BOOSTER_ERR_LEASE_NOT_HELD: {
    status: 503,
    message: 'The active booster cannot confirm its leader lease (database unreachable); drains are paused',
    hint: 'Transient: retry after Retry-After once the database answers again; requests are still proxied meanwhile.',
  },
  /** The code keeps its first name (codes are stable): the process it cannot reach is the primary. */
  BOOSTER_ERR_LEADER_UNREACHABLE: {
    status: 503,
    message: 'The data-plane worker could not reach its primary process for a /_booster/ request',
    hint: 'Transient while the booster starts, stops or restarts its primary process; retry after Retry-After. If it persists, the booster process needs a restart (see its log).',
  },
  BOOSTER_ERR_BAD_REQUEST: {
    status: 400,
    message: 'The request is malformed',
    hint: 'An HTTP/1.1 request needs exactly one Host header (RFC 9112 3.2), any HTTP/1.x request at most one, and the target must be a path (/…) or an absolute http(s) URL. The connection is closed after this answer.',
  },
  BOOSTER_ERR_HTTP_VERSION: {
    status: 505,
    message: 'This HTTP version is not supported on an HTTP/1 connection',
    hint: 'Send HTTP/1.0 or HTTP/1.1, or HTTP/2 over TLS (ALPN h2). An HTTP/1 request line that claims another version is refused.',
  },
  BOOSTER_ERR_EXPECTATION_FAILED: {
    status: 417,
    message: 'The booster meets no expectation other than 100-continue',
    hint: 'Send Expect: 100-continue or no Expect header. The connection is closed after this answer.',
  },
  BOOSTER_ERR_BODY_TOO_LARGE: {
    status: 413,
    message: 'The request body is larger than the booster passes on',
    hint: 'See OMFLOW_BOOSTER_MAX_BODY_BYTES. The connection is closed after this answer; nothing was sent on to an app server.',
  },
  BOOSTER_ERR_BODY_TIMEOUT: {
    status: 408,
    message: 'The request body did not arrive in time',
    hint: 'The whole body must arrive within OMFLOW_BOOSTER_BODY_TIMEOUT_MS of the request head. Retry on a faster link, or raise the setting for large uploads.',
  },
  BOOSTER_ERR_VIP_ARPING: {
    status: 500,
    message: 'The virtual IP needs an arping this booster can use for its gratuitous ARP',
    hint: "Install Debian's iputils-arping (or its arping package, Thomas Habets' arping) on the booster host, or unset OMFLOW_BOOSTER_VIP. install.sh --vip checks this before it installs.",
  },
  BOOSTER_ERR_INTERNAL: {
    status: 500,
    message: 'The booster failed to handle this request',
    hint: 'A defect in the booster, not in the request or the servers: the request was not proxied and the process keeps serving. The booster log has the error with the request id; report it.',
  },
  BOOSTER_ERR_SERVER_LIVE: {
    status: 409,
    message: 'The server still heartbeats; only a server that is gone can be retired',
    hint: 'Drain it (`omflow server drain ID`), stop its agent and server, wait until `omflow status` shows it down, then retire it. A retired server that heartbeats again registers anew.',
  },
  BOOSTER_ERR_DUPLICATE_NODE_ID: {
    status: 409,
    message: 'Another live server already heartbeats with this node id from a different URL',
    hint: 'Two hosts share one OMFLOW_NODE_ID: give each app server (and its agent) its own id. The first one keeps its place; this one is not routed until it has its own id or the other stops heartbeating. `omflow status` lists both URLs.',
  },
  BOOSTER_ERR_NOT_ACTIVE: {
    status: 409,
    message: 'Only the active booster can hand over the active role',
    hint: 'Send the switchover to the active booster (X-Booster-Active names it); `omflow switchover` follows it by itself.',
  },
  BOOSTER_ERR_SWITCHOVER_NO_CANDIDATE: {
    status: 409,
    message: 'No standby booster can take over now',
    hint: 'The peer (OMFLOW_BOOSTER_PEER_URL) must answer as a standby, and --to must name it. Check `omflow status` (peer alive?) and the standby log.',
  },
  BOOSTER_ERR_MAINTENANCE: {
    status: 503,
    message: 'The service is down for maintenance',
    hint: 'An operator turned maintenance mode on (`omflow maintenance on`); retry after Retry-After. Admin pages, login, health checks, step dispatch and patch rollouts keep working. `omflow maintenance off` ends it.',
  },
});
