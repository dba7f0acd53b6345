import { CommonErrors } from '../errors.js';

/**
 * A server's view of its database over the last heartbeat interval: the median query time
 * (round trip plus execution) and how long requests waited for a pooled connection (the mean
 * wait of granted acquires, or the age of the oldest one still waiting if longer). Boosters
 * shed new work when these climb past OMFLOW_BOOSTER_DB_PRESSURE_MS.
 */
export interface HeartbeatDb {
  rttMs: number;
  poolWaitMs: number;
}

/** Server → boosters, every second, active first. */
export interface Heartbeat {
  nodeId: string;
  /** Where boosters reach this server (data plane and /_internal). */
  url: string;
  version: string;
  /** Agent control API of this node, when it runs under an agent. */
  agentUrl?: string;
  /** Monotonic per process start; lets a booster ignore reordered heartbeats. */
  seq: number;
  startedAt: string;
  inflight: number;
  runningSteps: number;
  stepCapacity: number;
  eventLoopLagMs: number;
  dbPool: { used: number; waiting: number };
  /** Set while this server cannot reach the database: for how long (ms). */
  dbUnreachableMs?: number;
  /** Optional: servers of older releases do not send it (a booster then sees no pressure from them). */
  db?: HeartbeatDb;
  cpu: number;
  rssBytes: number;
  draining: boolean;
  /** Newest booster epoch this server has seen. */
  epochSeen: number;
}

/** Booster's answer to a heartbeat. */
export interface HeartbeatReply {
  role: 'active' | 'standby';
  epoch: number;
  boosterId: string;
  activeUrl: string | null;
}

/** Agent → boosters. */
export interface AgentReport {
  nodeId: string;
  agentUrl: string;
  state: AgentState;
  version: string | null;
  detail?: string;
}

export const AGENT_STATES = ['starting', 'running', 'degraded', 'recovering', 'stopping', 'stopped', 'patching', 'failed'] as const;
export type AgentState = (typeof AGENT_STATES)[number];

/** Booster → server: run this step under this lease. */
export interface StepDispatch {
  stepId: number;
  epoch: number;
  /** Lease length the booster granted; the server renews while the step runs longer. */
  leaseMs: number;
  attempt: number;
}

/** Anyone → booster → agents: a new target release is in the database. */
export interface PatchNotice {
  patchId: number;
  version: string;
  sequence: number;
}

// ---- validation of untrusted JSON: a few clear lines instead of a schema library ----

type Shape = Record<string, 'string' | 'number' | 'boolean' | 'object' | 'string?' | 'number?' | 'boolean?'>;

function check<T>(value: unknown, shape: Shape, what: string): T {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw CommonErrors.COMMON_ERR_BAD_REQUEST(`${what}: body must be a JSON object`);
  const problems: string[] = [];
  const v = value as Record<string, unknown>;
  for (const [field, kind] of Object.entries(shape)) {
    const optional = kind.endsWith('?');
    const type = kind.replace('?', '');
    if (v[field] === undefined || v[field] === null) {
      if (!optional) problems.push(`${field} is required`);
      continue;
    }
    if (type === 'number' ? !Number.isFinite(v[field]) : typeof v[field] !== type) problems.push(`${field} must be a ${type}`);
  }
  if (problems.length) throw CommonErrors.COMMON_ERR_BAD_REQUEST(`${what}: ${problems.join('; ')}`, { problems });
  return value as T;
}

const NODE_ID = /^[A-Za-z0-9._-]{1,64}$/;

function checkUrl(url: string, field: string, what: string): void {
  let ok = false;
  try {
    const u = new URL(url);
    ok = (u.protocol === 'http:' || u.protocol === 'https:') && url.length <= 255;
  } catch {
    ok = false;
  }
  if (!ok) throw CommonErrors.COMMON_ERR_BAD_REQUEST(`${what}: ${field} must be an http(s) URL`, { problems: [`${field} must be an http(s) URL`] });
}

export function parseHeartbeat(value: unknown): Heartbeat {
  const hb = check<Heartbeat>(
    value,
    {
      nodeId: 'string',
      url: 'string',
      version: 'string',
      agentUrl: 'string?',
      seq: 'number',
      startedAt: 'string',
      inflight: 'number',
      runningSteps: 'number',
      stepCapacity: 'number',
      eventLoopLagMs: 'number',
      dbPool: 'object',
      dbUnreachableMs: 'number?',
      cpu: 'number',
      rssBytes: 'number',
      draining: 'boolean',
      epochSeen: 'number',
    },
    'heartbeat',
  );
  if (!NODE_ID.test(hb.nodeId)) throw CommonErrors.COMMON_ERR_BAD_REQUEST('heartbeat: nodeId must match [A-Za-z0-9._-]{1,64}');
  checkUrl(hb.url, 'url', 'heartbeat');
  if (hb.agentUrl !== undefined && hb.agentUrl !== null) checkUrl(hb.agentUrl, 'agentUrl', 'heartbeat');
  check(hb.dbPool, { used: 'number', waiting: 'number' }, 'heartbeat.dbPool');
  if (hb.db !== undefined && hb.db !== null) {
    check(hb.db, { rttMs: 'number', poolWaitMs: 'number' }, 'heartbeat.db');
    if (hb.db.rttMs < 0 || hb.db.poolWaitMs < 0) throw CommonErrors.COMMON_ERR_BAD_REQUEST('heartbeat.db: rttMs and poolWaitMs must not be negative');
  } else delete hb.db;
  return hb;
}

export function parseAgentReport(value: unknown): AgentReport {
  const r = check<AgentReport>(value, { nodeId: 'string', agentUrl: 'string', state: 'string', version: 'string?', detail: 'string?' }, 'agent report');
  if (!NODE_ID.test(r.nodeId)) throw CommonErrors.COMMON_ERR_BAD_REQUEST('agent report: nodeId must match [A-Za-z0-9._-]{1,64}');
  if (!(AGENT_STATES as readonly string[]).includes(r.state))
    throw CommonErrors.COMMON_ERR_BAD_REQUEST(`agent report: state must be one of ${AGENT_STATES.join(', ')}`);
  checkUrl(r.agentUrl, 'agentUrl', 'agent report');
  return r;
}

export function parseStepDispatch(value: unknown): StepDispatch {
  const d = check<StepDispatch>(value, { stepId: 'number', epoch: 'number', leaseMs: 'number', attempt: 'number' }, 'step dispatch');
  if (!Number.isSafeInteger(d.stepId) || d.stepId <= 0 || !Number.isSafeInteger(d.epoch) || d.epoch < 0 || d.leaseMs <= 0)
    throw CommonErrors.COMMON_ERR_BAD_REQUEST('step dispatch: stepId > 0, epoch >= 0 and leaseMs > 0 are required');
  return d;
}

export function parsePatchNotice(value: unknown): PatchNotice {
  return check<PatchNotice>(value, { patchId: 'number', version: 'string', sequence: 'number' }, 'patch notice');
}

// ---- operator commands (the CLI with a write token, the admin page and agents signed) ----

/**
 * `by`: who asked, as a signed caller knows it (the admin page sends `admin:<login>`); the event
 * log shows it with the caller's node. A token caller is named by its token, never by this field.
 */
export interface DrainCommand {
  reason?: string;
  by?: string;
}
export interface WeightCommand {
  weight: number;
  by?: string;
}
export interface SwitchoverCommand {
  /** Node id of the booster to hand the active role to (default: the peer). */
  to?: string;
  by?: string;
}
export interface MaintenanceCommand {
  on: boolean;
  /** Shown on the maintenance page and in the API's 503 (at most 500 characters). */
  message?: string;
  /** Retry-After of the 503 answers, in seconds. */
  retryAfterS?: number;
  by?: string;
}
/** Active → the standby it hands the lease to (switchover): the lease row already names the standby at this epoch. */
export interface TakeoverCall {
  epoch: number;
  from: string;
}

/** Weights as HAProxy takes them, minus 0 (a server that must get nothing new is drained). */
export const WEIGHT_RANGE = { min: 1, max: 1000 } as const;
export const MAINTENANCE_MESSAGE_MAX = 500;

export function parseDrainCommand(value: unknown): DrainCommand {
  return check<DrainCommand>(value, { reason: 'string?', by: 'string?' }, 'drain');
}

export function parseWeightCommand(value: unknown): WeightCommand {
  const c = check<WeightCommand>(value, { weight: 'number', by: 'string?' }, 'weight');
  if (!Number.isInteger(c.weight) || c.weight < WEIGHT_RANGE.min || c.weight > WEIGHT_RANGE.max)
    throw CommonErrors.COMMON_ERR_BAD_REQUEST(
      `weight: must be an integer from ${WEIGHT_RANGE.min} to ${WEIGHT_RANGE.max} (drain a server that must get no new requests)`,
    );
  return c;
}

export function parseSwitchoverCommand(value: unknown): SwitchoverCommand {
  const c = check<SwitchoverCommand>(value, { to: 'string?', by: 'string?' }, 'switchover');
  if (c.to !== undefined && c.to !== null && !NODE_ID.test(c.to)) throw CommonErrors.COMMON_ERR_BAD_REQUEST('switchover: to must be a booster node id');
  return c;
}

export function parseMaintenanceCommand(value: unknown): MaintenanceCommand {
  const c = check<MaintenanceCommand>(value, { on: 'boolean', message: 'string?', retryAfterS: 'number?', by: 'string?' }, 'maintenance');
  if (c.message !== undefined && c.message !== null && c.message.length > MAINTENANCE_MESSAGE_MAX)
    throw CommonErrors.COMMON_ERR_BAD_REQUEST(`maintenance: message must be at most ${MAINTENANCE_MESSAGE_MAX} characters`);
  if (c.retryAfterS !== undefined && c.retryAfterS !== null && (!Number.isInteger(c.retryAfterS) || c.retryAfterS < 1 || c.retryAfterS > 86_400))
    throw CommonErrors.COMMON_ERR_BAD_REQUEST('maintenance: retryAfterS must be an integer from 1 to 86400');
  return c;
}

export function parseTakeoverCall(value: unknown): TakeoverCall {
  const c = check<TakeoverCall>(value, { epoch: 'number', from: 'string' }, 'takeover');
  if (!Number.isSafeInteger(c.epoch) || c.epoch <= 0) throw CommonErrors.COMMON_ERR_BAD_REQUEST('takeover: epoch must be a positive integer');
  return c;
}
