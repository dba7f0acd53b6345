import { bool, defineArea, httpUrl, int, optionalStr, port, str } from '../define.js';

/** Keys of the app server (`omflow server`, started by the agent). Owned by server/. */
export const serverArea = defineArea({
  name: 'server',
  title: 'App server',
  keys: {
    host: str('OMFLOW_SERVER_HOST', { doc: 'Address the app server listens on.', default: '127.0.0.1' }),
    port: port('OMFLOW_SERVER_PORT', { doc: 'Port of the app server (0: any free port).', default: 8000 }),
    publicUrl: httpUrl('OMFLOW_SERVER_URL', { doc: 'URL at which boosters reach this server. Defaults to http://<host>:<port>.' }),
    version: optionalStr('OMFLOW_SERVER_VERSION', {
      doc: 'Version string this server reports in heartbeats and /healthz (the agent sets it from the release it started).',
      defaultDoc: 'the package.json version',
    }),
    agentUrl: httpUrl('OMFLOW_AGENT_URL', { doc: 'Control API of the agent supervising this server, reported in heartbeats. Empty: not under an agent.' }),
    heartbeatMs: int('OMFLOW_SERVER_HEARTBEAT_MS', {
      doc: 'Interval of the load report (heartbeat) sent to the boosters.',
      default: 1000,
      min: 100,
      max: 60_000,
    }),
    stepConcurrency: int('OMFLOW_SERVER_STEP_CONCURRENCY', {
      doc: 'Automatic flow steps this server runs at once (reported as stepCapacity).',
      default: 8,
      min: 1,
      max: 1000,
    }),
    stepLeaseMs: int('OMFLOW_SERVER_STEP_LEASE_MS', {
      doc: 'Lease taken by the built-in step dispatcher (no booster configured); renewed while a step runs.',
      default: 30_000,
      min: 1000,
    }),
    dispatchPollMs: int('OMFLOW_SERVER_DISPATCH_POLL_MS', {
      doc: 'How often the built-in step dispatcher looks for due steps (no booster configured).',
      default: 500,
      min: 20,
      max: 60_000,
    }),
    stopTimeoutMs: int('OMFLOW_SERVER_STOP_TIMEOUT_MS', {
      doc: 'Graceful stop: the longest wait for in-flight requests and steps before leases are given back and the process exits.',
      default: 10_000,
      min: 0,
      max: 600_000,
    }),
    bodyLimit: int('OMFLOW_SERVER_BODY_LIMIT', { doc: 'Largest accepted request body in bytes.', default: 1_048_576, min: 1024, max: 100 * 1_048_576 }),
    readyTimeoutMs: int('OMFLOW_SERVER_READY_TIMEOUT_MS', { doc: 'Bound of the /readyz database round trip.', default: 2000, min: 100, max: 60_000 }),
    passwordHashes: int('OMFLOW_SERVER_PASSWORD_HASHES', {
      doc: 'Password hashes (logins, password changes) computed at once; the others wait their turn. Each holds 128 MiB and one libuv thread for a few hundred milliseconds (scrypt N=2^17, the OWASP minimum), so this bounds the memory a burst of logins takes and leaves the thread pool room for the rest.',
      default: 2,
      min: 1,
      max: 64,
    }),
    operatorToken: optionalStr('OMFLOW_SERVER_OPERATOR_TOKEN', {
      reload: true,
      doc: "Bearer token that opens the metrics of the app server (/_internal/metrics on its port, never reachable through a booster) and of its agent (/_agent/metrics) to Prometheus, as OMFLOW_BOOSTER_OPERATOR_TOKEN does for a booster's (cluster members sign instead). At least 24 characters. Empty: only signed calls may read them. Prefer OMFLOW_SERVER_OPERATOR_TOKEN_FILE.",
      secret: true,
    }),
    cookieSecure: bool('OMFLOW_SERVER_COOKIE_SECURE', {
      doc: 'Always mark the session cookie Secure. Without it the cookie is Secure whenever the booster forwarded the request as X-Forwarded-Proto: https.',
      default: false,
    }),
  },
  check(values, report) {
    if (values.operatorToken !== undefined && values.operatorToken.length < 24) report('OMFLOW_SERVER_OPERATOR_TOKEN', 'must be at least 24 characters');
  },
});
