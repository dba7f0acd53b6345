import { CommonErrors } from '../errors.js';

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
