/**
 * The wire contract between boosters, agents and app servers: header names and paths.
 * Every part imports these; none spells them itself.
 */
export const HEADER = {
  /** Fencing epoch of the booster that proxied or dispatched (decimal). */
  epoch: 'x-booster-epoch',
  /** Address of the active booster, on a standby's 503. */
  active: 'x-booster-active',
  /** The server a request was proxied to (response header, for debugging and tests). */
  upstream: 'x-booster-upstream',
  requestId: 'x-request-id',
  idempotencyKey: 'idempotency-key',
  /** HMAC of a cluster-internal request; see cluster-auth.ts. */
  clusterSignature: 'x-omflow-signature',
  clusterTimestamp: 'x-omflow-timestamp',
  /** Random per send; the receiver refuses a nonce it has seen within the signature window. */
  clusterNonce: 'x-omflow-nonce',
  /** host:port the call was signed for; a receiver refuses calls signed for another. */
  clusterAudience: 'x-omflow-audience',
  /** The node id of the sender of a cluster-internal request. */
  clusterNode: 'x-omflow-node',
  /**
   * Set by a data-plane worker on each /_booster/ request it forwards to the primary: the client's
   * own connection was TLS (the hop from worker to primary is plain loopback). The worker drops a
   * client-sent one; the primary believes it only on its loopback listener.
   */
  clientTls: 'x-omflow-client-tls',
  /**
   * On an app server's 503 SERVER_ERR_DB_UNAVAILABLE: the database, not this server, failed.
   * Boosters do not count it against the server (every server shares the database).
   */
  dbUnavailable: 'x-omflow-db-unavailable',
  /**
   * On an app server's 409 SERVER_ERR_STALE_EPOCH to a proxied request: the newest epoch it has
   * seen. The request did not run; a booster that now stamps that epoch sends it again.
   */
  staleEpoch: 'x-omflow-stale-epoch',
} as const;

/** Paths on the booster (port 5169). Everything under /_booster/ is control plane. */
export const BOOSTER_PATH = {
  prefix: '/_booster/',
  active: '/_booster/active',
  status: '/_booster/status',
  metrics: '/_booster/metrics',
  events: '/_booster/events',
  /** POST Heartbeat (server → boosters, every second, active first). */
  heartbeat: '/_booster/heartbeat',
  /** POST AgentReport (agent → boosters, on every transition and every few seconds). */
  agentReport: '/_booster/agent-report',
  /** POST {reason?} — put a server into draining / take it out. */
  drain: (serverId: string) => `/_booster/servers/${encodeURIComponent(serverId)}/drain`,
  undrain: (serverId: string) => `/_booster/servers/${encodeURIComponent(serverId)}/undrain`,
  /** POST WeightCommand — the server's share of new requests (1..1000, default 100). */
  weight: (serverId: string) => `/_booster/servers/${encodeURIComponent(serverId)}/weight`,
  /** POST — forget a server that no longer heartbeats (its row goes). */
  retire: (serverId: string) => `/_booster/servers/${encodeURIComponent(serverId)}/retire`,
  /** POST SwitchoverCommand — the active hands the leader lease to the standby. */
  switchover: '/_booster/switchover',
  /** POST TakeoverCall (active → standby during a switchover): the lease row names you, take it now. */
  takeover: '/_booster/takeover',
  /** POST MaintenanceCommand — cluster-wide maintenance page on or off. */
  maintenance: '/_booster/maintenance',
  /** POST PatchNotice — the booster fans it out to every agent it knows. */
  patchNotice: '/_booster/patch-notice',
  /** POST (empty body) — a server committed a ready step: dispatch now instead of at the next poll. */
  stepsReady: '/_booster/steps-ready',
  /** POST LicenseChanged — re-read the license from the database now. */
  licenseChanged: '/_booster/license-changed',
} as const;

/** Paths on the app server that only cluster members may call (signed). */
export const SERVER_PATH = {
  healthz: '/healthz',
  readyz: '/readyz',
  /** POST StepDispatch (booster → server). */
  dispatchStep: '/_internal/steps/dispatch',
  /** GET Prometheus metrics: the operator token (OMFLOW_SERVER_OPERATOR_TOKEN) or a signature; on the server's own port only. */
  metrics: '/_internal/metrics',
  /** POST (signed, from the server's agent on `systemctl reload`): read the reloadable settings again. */
  reload: '/_internal/reload',
  /** Every path under this prefix is refused by the booster's data plane. */
  internalPrefix: '/_internal/',
} as const;

/** Paths on the agent control API. */
export const AGENT_PATH = {
  status: '/_agent/status',
  drain: '/_agent/drain',
  undrain: '/_agent/undrain',
  restart: '/_agent/restart',
  /** POST PatchNotice. */
  patchNotice: '/_agent/patch-notice',
  /** GET Prometheus metrics: the operator token (OMFLOW_SERVER_OPERATOR_TOKEN) or a signature. */
  metrics: '/_agent/metrics',
} as const;

export const DEFAULT_PORT = {
  booster: 5169,
  agent: 5169,
  server: 8000,
} as const;
