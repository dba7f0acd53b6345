import { defineArea, int, list, optionalStr, str } from '../define.js';

/** A duration key; `reload`: the running agent applies a change in place. */
const ms = (env: string, doc: string, def: number, min = 10, reload = false) => int(env, { doc, default: def, min, reload });

/** Keys of `omflow agent` and of patch handling (`omflow patch`, admin Patches page). Owned by agent/. */
export const agentArea = defineArea({
  name: 'agent',
  title: 'Booster Agent (omflow agent) and patches',
  keys: {
    host: str('OMFLOW_AGENT_HOST', { doc: 'Address of the agent control API.', default: '0.0.0.0' }),
    // The agent's public URL is OMFLOW_AGENT_URL of the server area (the server reports it too).
    port: int('OMFLOW_AGENT_PORT', {
      doc: 'Port of the agent control API (on a shared host, the next free port is taken).',
      default: 5169,
      min: 0,
      max: 65535,
    }),
    bootstrapDir: optionalStr('OMFLOW_AGENT_BOOTSTRAP_DIR', {
      doc: 'Directory the first release is copied from when OMFLOW_DATA_DIR/releases is empty. Default: the installed code of the agent itself.',
    }),
    releasesKeep: int('OMFLOW_AGENT_RELEASES_KEEP', {
      doc: 'Releases kept in OMFLOW_DATA_DIR/releases (the current one and the newest others).',
      default: 3,
      min: 2,
      max: 50,
    }),
    startTimeoutMs: ms('OMFLOW_AGENT_START_TIMEOUT_MS', 'Start: how long the server may take to pass its deep check (/readyz).', 60_000, 10, true),
    stopTimeoutMs: ms('OMFLOW_AGENT_STOP_TIMEOUT_MS', 'Stop: SIGKILL to the process group after SIGTERM plus this long.', 15_000, 10, true),
    drainTimeoutMs: ms('OMFLOW_AGENT_DRAIN_TIMEOUT_MS', 'Graceful stop: longest wait for in-flight work after asking the boosters to drain.', 30_000, 0, true),
    drainSettleMs: ms(
      'OMFLOW_AGENT_DRAIN_SETTLE_MS',
      'Graceful stop: pause after the drain call so boosters stop routing before in-flight is read.',
      500,
      0,
      true,
    ),
    quickIntervalMs: ms('OMFLOW_AGENT_QUICK_CHECK_INTERVAL_MS', 'Quick check (/healthz) period.', 2_000, 10, true),
    quickTimeoutMs: ms('OMFLOW_AGENT_QUICK_CHECK_TIMEOUT_MS', 'Quick check timeout (a single timeout is retried once, not counted).', 1_000, 10, true),
    deepIntervalMs: ms('OMFLOW_AGENT_DEEP_CHECK_INTERVAL_MS', 'Deep check (/readyz) period.', 10_000, 10, true),
    deepTimeoutMs: ms('OMFLOW_AGENT_DEEP_CHECK_TIMEOUT_MS', 'Deep check timeout (a single timeout is retried once, not counted).', 3_000, 10, true),
    failureThreshold: int('OMFLOW_AGENT_FAILURE_THRESHOLD', {
      reload: true,
      doc: 'Consecutive failed checks before the server is recovered (restarted).',
      default: 3,
      min: 1,
      max: 100,
    }),
    backoffMs: ms('OMFLOW_AGENT_RECOVERY_BACKOFF_MS', 'First restart delay of a recovery; doubles each time (with jitter).', 1_000, 0, true),
    backoffMaxMs: ms('OMFLOW_AGENT_RECOVERY_BACKOFF_MAX_MS', 'Longest restart delay.', 30_000, 0, true),
    maxRecoveries: int('OMFLOW_AGENT_MAX_RECOVERIES', {
      reload: true,
      doc: 'Recoveries allowed within OMFLOW_AGENT_RECOVERY_WINDOW_MS before the node is marked failed.',
      default: 5,
      min: 1,
      max: 1000,
    }),
    recoveryWindowMs: ms('OMFLOW_AGENT_RECOVERY_WINDOW_MS', 'Window for counting recoveries.', 300_000, 10, true),
    reportIntervalMs: ms('OMFLOW_AGENT_REPORT_INTERVAL_MS', 'Period of AgentReport to the boosters (also sent on every transition).', 5_000, 10, true),
    patchPollMs: ms('OMFLOW_AGENT_PATCH_POLL_MS', 'Database poll for new rollouts (fallback to the booster notice).', 10_000, 10, true),
    soakMs: ms('OMFLOW_AGENT_SOAK_MS', 'Health gate: the deep check must keep passing this long after a patched start.', 10_000, 0, true),
    rolloutParallelism: int('OMFLOW_AGENT_ROLLOUT_PARALLELISM', {
      doc: 'Nodes that may install a patch at the same time (recorded with the rollout when the patch is applied).',
      default: 1,
      min: 1,
      max: 100,
    }),
    rolloutLockTtlMs: ms('OMFLOW_AGENT_ROLLOUT_LOCK_TTL_MS', 'Rollout lock lease; renewed while a node installs, lapses if the agent dies.', 120_000, 1_000),
    trustedKeys: list('OMFLOW_PATCH_TRUSTED_KEYS', {
      reload: true,
      doc: 'Operator patch keys trusted besides the pinned vendor key: keyId=base64(SPKI DER) entries or paths of Ed25519 public-key PEM files.',
      default: [],
    }),
    chunkBytes: int('OMFLOW_PATCH_CHUNK_BYTES', { doc: 'Size of the database chunks a patch is stored in.', default: 256 * 1024, min: 1024, max: 256 * 1024 }),
    maxEntries: int('OMFLOW_PATCH_MAX_ENTRIES', { reload: true, doc: 'Most entries a patch payload may hold.', default: 50_000, min: 1 }),
    maxEntryBytes: int('OMFLOW_PATCH_MAX_ENTRY_BYTES', { reload: true, doc: 'Largest single file in a patch payload.', default: 64 * 1024 * 1024, min: 1 }),
    maxTotalBytes: int('OMFLOW_PATCH_MAX_TOTAL_BYTES', { reload: true, doc: 'Largest total unpacked size of a patch.', default: 512 * 1024 * 1024, min: 1 }),
  },
});
