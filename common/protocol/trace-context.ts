import { randomFillSync } from 'node:crypto';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/), the part every process of the
 * cluster needs: read a `traceparent`, start one, and the trace id for the logs. The booster
 * accepts or starts it at the front door and passes it upstream and with step dispatches; the
 * app server puts its trace id in its request logs.
 */
export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';

export interface TraceParent {
  /** 32 lowercase hex digits, not all zero. */
  traceId: string;
  /** 16 lowercase hex digits, not all zero: the caller's span. */
  parentId: string;
  /** Two hex digits; bit 0 is "sampled". */
  flags: string;
}

const HEX = /^[0-9a-f]+$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/**
 * Parses a `traceparent` header value; null when it is missing, repeated (node:http joins
 * repeats with ", ") or invalid. Version 00 must be exactly 55 characters; a later version may
 * carry more after a '-' (the spec's forward compatibility), version ff is invalid.
 */
export function parseTraceParent(value: string | string[] | undefined): TraceParent | null {
  if (typeof value !== 'string' || value.length < 55) return null;
  if (value.charCodeAt(2) !== 45 || value.charCodeAt(35) !== 45 || value.charCodeAt(52) !== 45) return null;
  const version = value.slice(0, 2);
  if (version === 'ff' || !HEX.test(version)) return null;
  if (value.length > 55 && (version === '00' || value.charCodeAt(55) !== 45)) return null;
  const traceId = value.slice(3, 35);
  const parentId = value.slice(36, 52);
  const flags = value.slice(53, 55);
  if (!HEX.test(traceId) || !HEX.test(parentId) || !HEX.test(flags) || traceId === ZERO_TRACE || parentId === ZERO_SPAN) return null;
  return { traceId, parentId, flags };
}

export function formatTraceParent(t: TraceParent): string {
  return `00-${t.traceId}-${t.parentId}-${t.flags}`;
}

// Random ids from a pool filled 4 KiB at a time: one getrandom per 170 new traces, not one per request.
const POOL = Buffer.allocUnsafe(4080);
let poolAt = POOL.length;

/** `bytes` random bytes as lowercase hex. Ids are identifiers, not secrets, but must not collide. */
export function randomHex(bytes: number): string {
  if (poolAt + bytes > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const s = POOL.toString('hex', poolAt, poolAt + bytes);
  poolAt += bytes;
  return s;
}

/** A new trace: random trace id and span id; `sampled` sets flag bit 0. */
export function startTrace(sampled = false): TraceParent {
  const ids = randomHex(24);
  return { traceId: ids.slice(0, 32), parentId: ids.slice(32), flags: sampled ? '01' : '00' };
}

/** A valid `traceparent` in version 00 form (55 characters, what a step row stores), or null. */
export function traceParentOf(value: string | string[] | undefined): string | null {
  const t = parseTraceParent(value);
  return t ? formatTraceParent(t) : null;
}

/** The trace id of a `traceparent` header value, or undefined (for log lines). */
export function traceIdOf(value: string | string[] | undefined): string | undefined {
  return parseTraceParent(value)?.traceId;
}
