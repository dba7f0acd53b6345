import jsonata from 'jsonata';
import { MAX_RUNS_LIMIT, ON_FAILOVER, type OnFailover } from '../../../common/protocol/steps.js';
import { checkFieldDefs, type FieldDef } from '../forms/fields.js';

/**
 * A flow version's definition (stored as JSON in flow_versions.definition). Expressions are
 * JSONata over the ticket's fields (`amount > 1000`, `$round(amount * 1.1, 2)`): a
 * declarative language with no access to the process — never eval/new Function.
 */
export interface FormStep {
  type: 'form';
  title?: string;
  /** Who acts: a user name, a group name, or the ticket's creator. Unassigned: any admin. */
  assignee?: { user?: string; group?: string; creator?: boolean };
  /** Extra fields filled in at this step (validated like form fields). */
  fields?: FieldDef[];
  /** After approve/submit. */
  next: string;
  /** After reject (default: end as rejected). */
  onReject?: string;
  /** After send back (the action is refused when absent). */
  onSendBack?: string;
}
/**
 * What an automatic step does when a run of it is lost (its server crashed, hung or stopped while
 * it ran): `onFailover` 'rerun' (default) runs it again on another server until `maxRuns` runs
 * (default 3) were lost; 'abort' never runs it twice. A step the policy stops is quarantined and
 * its ticket marked until an administrator runs it again or fails the ticket (ADR 0020).
 */
export interface RunPolicy {
  onFailover?: OnFailover;
  maxRuns?: number;
}

export interface ConditionStep extends RunPolicy {
  type: 'condition';
  branches: Array<{ when: string; next: string }>;
  default: string;
}
export interface ComputeStep extends RunPolicy {
  type: 'compute';
  /** field → expression; evaluated in order, each sees the fields set before it. */
  set: Record<string, string>;
  next: string;
}
export interface HttpStep extends RunPolicy {
  type: 'http';
  url: string;
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Expression for the JSON body (default: the ticket's fields). */
  body?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
  /** Retries after the first attempt (default 3), with exponential backoff from backoffMs (default 200). */
  retries?: number;
  backoffMs?: number;
  /** Field receiving {status, body} of the successful response. */
  resultField?: string;
  next: string;
  /** Step after the last failed attempt (default: the ticket fails). */
  onError?: string;
}
export interface TimerStep extends RunPolicy {
  type: 'timer';
  durationMs?: number;
  /** A date/ISO field: wait until then. */
  untilField?: string;
  next: string;
}
export interface EndStep {
  type: 'end';
  state?: 'completed' | 'rejected' | 'cancelled';
}
export type StepDef = FormStep | ConditionStep | ComputeStep | HttpStep | TimerStep | EndStep;

export interface FlowDefinition {
  start: string;
  steps: Record<string, StepDef>;
}

export const STEP_KINDS = ['form', 'condition', 'compute', 'http', 'timer', 'end'] as const;
const STEP_KEY = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;

const compiled = new Map<string, ReturnType<typeof jsonata>>();
/** Guardrails: an expression can neither run long nor build huge sequences inside the server process. */
const LIMITS = { timeout: 1000, stack: 200, sequence: 100_000 };

/** Compiles (cached) and evaluates a JSONata expression against the ticket's fields. */
export async function evaluate(expr: string, data: Record<string, unknown>): Promise<unknown> {
  let e = compiled.get(expr);
  if (!e) {
    e = jsonata(expr, LIMITS);
    if (compiled.size > 5000) compiled.clear();
    compiled.set(expr, e);
  }
  return e.evaluate(data);
}

function compiles(expr: unknown): string | null {
  if (typeof expr !== 'string' || !expr.trim()) return 'must be a non-empty expression';
  try {
    jsonata(expr);
    return null;
  } catch (err) {
    return `is not a valid expression: ${(err as Error).message}`;
  }
}

/** Every problem of a definition at once; empty when it can be deployed. */
export function checkDefinition(value: unknown): string[] {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return ['definition must be an object {start, steps}'];
  const def = value as { start?: unknown; steps?: unknown };
  const problems: string[] = [];
  if (!def.steps || typeof def.steps !== 'object' || Array.isArray(def.steps)) return ['steps must be an object keyed by step key'];
  const steps = def.steps as Record<string, Record<string, unknown>>;
  const keys = Object.keys(steps);
  if (typeof def.start !== 'string' || !steps[def.start]) problems.push('start must name a step');
  const target = (where: string, next: unknown, optional = false) => {
    if (next === undefined && optional) return;
    if (typeof next !== 'string' || !steps[next]) problems.push(`${where} must name a step`);
  };
  let ends = 0;
  for (const key of keys) {
    const s = steps[key];
    const where = `steps.${key}`;
    if (!STEP_KEY.test(key)) problems.push(`${where}: step keys must match ${STEP_KEY}`);
    if (!s || typeof s !== 'object') {
      problems.push(`${where} must be an object`);
      continue;
    }
    const automatic = ['condition', 'compute', 'http', 'timer'].includes(String(s.type));
    if (s.onFailover !== undefined && (!automatic || !(ON_FAILOVER as readonly unknown[]).includes(s.onFailover)))
      problems.push(`${where}.onFailover must be ${ON_FAILOVER.join(' or ')}, on an automatic step`);
    if (s.maxRuns !== undefined && (!automatic || !Number.isInteger(s.maxRuns) || (s.maxRuns as number) < 1 || (s.maxRuns as number) > MAX_RUNS_LIMIT))
      problems.push(`${where}.maxRuns must be an integer from 1 to ${MAX_RUNS_LIMIT}, on an automatic step`);
    switch (s.type) {
      case 'form':
        target(`${where}.next`, s.next);
        target(`${where}.onReject`, s.onReject, true);
        target(`${where}.onSendBack`, s.onSendBack, true);
        if (s.fields !== undefined) problems.push(...checkFieldDefs(s.fields).map((p) => `${where}.${p}`));
        if (s.assignee !== undefined && (typeof s.assignee !== 'object' || s.assignee === null))
          problems.push(`${where}.assignee must be {user} | {group} | {creator: true}`);
        break;
      case 'condition':
        if (!Array.isArray(s.branches)) problems.push(`${where}.branches must be a list of {when, next}`);
        else
          (s.branches as Array<Record<string, unknown>>).forEach((b, i) => {
            const c = compiles(b?.when);
            if (c) problems.push(`${where}.branches[${i}].when ${c}`);
            target(`${where}.branches[${i}].next`, b?.next);
          });
        target(`${where}.default`, s.default);
        break;
      case 'compute':
        if (!s.set || typeof s.set !== 'object' || Array.isArray(s.set)) problems.push(`${where}.set must map field names to expressions`);
        else
          for (const [field, expr] of Object.entries(s.set as Record<string, unknown>)) {
            const c = compiles(expr);
            if (c) problems.push(`${where}.set.${field} ${c}`);
          }
        target(`${where}.next`, s.next);
        break;
      case 'http': {
        let okUrl = false;
        try {
          const u = new URL(String(s.url));
          okUrl = u.protocol === 'http:' || u.protocol === 'https:';
        } catch {
          okUrl = false;
        }
        if (!okUrl) problems.push(`${where}.url must be an http(s) URL`);
        if (s.body !== undefined) {
          const c = compiles(s.body);
          if (c) problems.push(`${where}.body ${c}`);
        }
        for (const n of ['timeoutMs', 'retries', 'backoffMs'] as const)
          if (s[n] !== undefined && (!Number.isInteger(s[n]) || (s[n] as number) < 0)) problems.push(`${where}.${n} must be a non-negative integer`);
        target(`${where}.next`, s.next);
        target(`${where}.onError`, s.onError, true);
        break;
      }
      case 'timer':
        if (s.durationMs === undefined && s.untilField === undefined) problems.push(`${where} needs durationMs or untilField`);
        if (s.durationMs !== undefined && (!Number.isInteger(s.durationMs) || (s.durationMs as number) < 0))
          problems.push(`${where}.durationMs must be a non-negative integer`);
        target(`${where}.next`, s.next);
        break;
      case 'end':
        ends++;
        if (s.state !== undefined && !['completed', 'rejected', 'cancelled'].includes(String(s.state)))
          problems.push(`${where}.state must be completed, rejected or cancelled`);
        break;
      default:
        problems.push(`${where}.type must be one of ${STEP_KINDS.join(', ')}`);
    }
  }
  if (ends === 0) problems.push('the flow needs at least one end step');
  return problems;
}
