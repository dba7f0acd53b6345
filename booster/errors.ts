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
  BOOSTER_ERR_INTERNAL: {
    status: 500,
    message: 'The booster failed to handle this request',
    hint: 'A defect in the booster, not in the request or the servers: the request was not proxied and the process keeps serving. The booster log has the error with the request id; report it.',
  },
});
