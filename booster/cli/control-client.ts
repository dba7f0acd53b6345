import { hostname, userInfo } from 'node:os';
import { request } from 'undici';
import type { CliContext } from '../../common/cli/context.js';
import { boosterArea } from '../../common/config/areas/booster.js';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { operatorArea } from '../../common/config/areas/operator.js';
import { loadConfig } from '../../common/config/load.js';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { DEFAULT_PORT } from '../../common/protocol/headers.js';

/**
 * How the operator commands reach a booster's /_booster/ API: with OMFLOW_OPERATOR_TOKEN as a
 * Bearer token (the booster names it in the event log), else signed with OMFLOW_CLUSTER_SECRET
 * (then `by` says which user on which host ran the command). Reads also take the booster's own
 * read-only OMFLOW_BOOSTER_OPERATOR_TOKEN.
 */
export interface ControlCredentials {
  secret?: string;
  nodeId: string;
  token?: string;
}

/** Credentials from the environment or --config file; any may be absent. */
export function controlCredentials(ctx: Pick<CliContext, 'env' | 'configFile'>, purpose: 'read' | 'command' = 'read'): ControlCredentials {
  const out: ControlCredentials = { nodeId: 'omflow-cli' };
  const tryLoad = <T>(load: () => T): T | undefined => {
    try {
      return load();
    } catch {
      // Keys of another part invalid here: not this command's business.
      return undefined;
    }
  };
  const cluster = tryLoad(() => loadConfig([clusterArea], { env: ctx.env, file: ctx.configFile }).cluster);
  if (cluster) {
    out.secret = cluster.secret;
    out.nodeId = cluster.nodeId;
  }
  out.token = tryLoad(() => loadConfig([operatorArea], { env: ctx.env, file: ctx.configFile }).operator.token);
  if (!out.token && !out.secret && purpose === 'read')
    out.token = tryLoad(() => loadConfig([boosterArea], { env: ctx.env, file: ctx.configFile }).booster.operatorToken);
  return out;
}

/** --booster, else OMFLOW_OPERATOR_BOOSTER_URL, else the local booster. */
export function boosterBase(flag: string | true | undefined, ctx: Pick<CliContext, 'env' | 'configFile'>): string {
  if (typeof flag === 'string') return flag.replace(/\/+$/, '');
  let configured: string | undefined;
  try {
    configured = loadConfig([operatorArea], { env: ctx.env, file: ctx.configFile }).operator.boosterUrl;
  } catch {
    configured = undefined;
  }
  return configured ?? `http://127.0.0.1:${DEFAULT_PORT.booster}`;
}

export interface ControlReply {
  status: number;
  body: unknown;
  /** The booster that answered (after following the active). */
  url: string;
}

/**
 * One call. A read is signed where the cluster secret is configured (as before), else sends the
 * token; a command sends the token when there is one, so the event log names the person's token,
 * else it is signed.
 */
export async function callControl(
  base: string,
  method: 'GET' | 'POST',
  path: string,
  creds: ControlCredentials,
  body?: Record<string, unknown>,
  timeoutMs = 10_000,
): Promise<ControlReply> {
  // The operator's own token when there is one (reads too): a signature is made for the address
  // called, and a Booster refuses one made for the VIP, which is not its own.
  if (creds.secret && !creds.token) {
    const payload = method === 'POST' ? { ...body, by: `cli:${userName()}@${hostname()}` } : undefined;
    const r = await createClusterClient({ secret: creds.secret, nodeId: creds.nodeId, timeoutMs }).call(base, method, path, payload);
    if (r.status === 0) throw new Error(r.error ?? 'no answer');
    return { status: r.status, body: r.body, url: base };
  }
  const text = method === 'POST' ? JSON.stringify(body ?? {}) : undefined;
  const res = await request(new URL(path, base), {
    method,
    body: text,
    headers: {
      accept: 'application/json',
      ...(text !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(creds.token ? { authorization: `Bearer ${creds.token}` } : {}),
    },
    signal: AbortSignal.timeout(timeoutMs),
  });
  const raw = await res.body.text();
  let parsed: unknown = raw;
  try {
    parsed = JSON.parse(raw);
  } catch {
    // not JSON
  }
  return { status: res.statusCode, body: parsed, url: base };
}

/** A command that only the active takes (switchover): a standby's 409 names the active, which is asked once. */
export async function callActive(
  base: string,
  path: string,
  creds: ControlCredentials,
  body: Record<string, unknown>,
  timeoutMs?: number,
): Promise<ControlReply> {
  const first = await callControl(base, 'POST', path, creds, body, timeoutMs);
  const refused = first.body as { code?: string; details?: { activeUrl?: unknown } } | null;
  const active = refused?.details?.activeUrl;
  if (first.status === 409 && refused?.code === 'BOOSTER_ERR_NOT_ACTIVE' && typeof active === 'string' && active !== base)
    return { ...(await callControl(active, 'POST', path, creds, body, timeoutMs)), url: active };
  return first;
}

/**
 * One call of `omflow <command>`: the booster's 200 answer, or the exit code after saying why not
 * (no answer, or the refusal's code and message).
 */
export async function answerOf(
  ctx: Pick<CliContext, 'stderr'>,
  command: string,
  base: string,
  call: () => Promise<ControlReply>,
): Promise<{ reply: ControlReply } | { exitCode: number }> {
  let reply: ControlReply;
  try {
    reply = await call();
  } catch (err) {
    ctx.stderr.write(`omflow ${command}: cannot reach the booster at ${base}: ${(err as Error).message}\n`);
    return { exitCode: 1 };
  }
  return reply.status === 200 ? { reply } : { exitCode: refusal(ctx, command, reply.url, reply) };
}

/** Prints a refusal the way every command does (code and message), and returns the exit code. */
export function refusal(ctx: Pick<CliContext, 'stderr'>, command: string, base: string, r: ControlReply): number {
  const b = r.body as { code?: string; message?: string } | null;
  if (r.status === 401)
    ctx.stderr.write(
      `omflow ${command}: the booster at ${base} wants credentials: set OMFLOW_OPERATOR_TOKEN(_FILE) to a write token, or run where OMFLOW_CLUSTER_SECRET is configured\n`,
    );
  else if (b && typeof b === 'object' && b.code) ctx.stderr.write(`omflow ${command}: ${b.code}: ${b.message ?? ''}\n`);
  else ctx.stderr.write(`omflow ${command}: the booster at ${base} answered HTTP ${r.status}\n`);
  return 1;
}

function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
