import { request } from 'undici';
import type { CliContext } from '../../common/cli/context.js';
import { parseFlags } from '../../common/cli/context.js';
import { boosterArea } from '../../common/config/areas/booster.js';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { loadConfig } from '../../common/config/load.js';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { BOOSTER_PATH, DEFAULT_PORT } from '../../common/protocol/headers.js';

const HELP = `Usage: omflow status [--booster URL] [--json] [--events N]

Prints the cluster as seen by a Booster (default http://127.0.0.1:${DEFAULT_PORT.booster}):
boosters, servers with their agent state, license, and recent events.
Signs with OMFLOW_CLUSTER_SECRET when configured, else sends OMFLOW_BOOSTER_OPERATOR_TOKEN.
`;

export interface ControlCredentials {
  secret?: string;
  nodeId: string;
  token?: string;
}

/** Credentials for the read-only control paths, from the environment or --config file; either may be absent. */
export function controlCredentials(ctx: Pick<CliContext, 'env' | 'configFile'>): ControlCredentials {
  const out: ControlCredentials = { nodeId: 'omflow-cli' };
  try {
    const cfg = loadConfig([clusterArea], { env: ctx.env, file: ctx.configFile });
    out.secret = cfg.cluster.secret;
    out.nodeId = cfg.cluster.nodeId;
  } catch {
    // No cluster secret on this host: the operator token may do.
  }
  try {
    out.token = loadConfig([boosterArea], { env: ctx.env, file: ctx.configFile }).booster.operatorToken;
  } catch {
    // Booster keys invalid here: they are not this command's business.
  }
  return out;
}

/** GET of a read-only control path: signed (fresh nonce each call) or with the Bearer token. */
export async function getControl(base: string, path: string, creds: ControlCredentials, timeoutMs = 5000): Promise<{ status: number; body: unknown }> {
  if (creds.secret) {
    const r = await createClusterClient({ secret: creds.secret, nodeId: creds.nodeId, timeoutMs }).call(base, 'GET', path);
    if (r.status === 0) throw new Error(r.error ?? 'no answer');
    return { status: r.status, body: r.body };
  }
  const res = await request(new URL(path, base), {
    headers: creds.token ? { authorization: `Bearer ${creds.token}`, accept: 'application/json' } : { accept: 'application/json' },
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.body.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.statusCode, body };
}

type Status = {
  role: string;
  epoch: number;
  nodeId: string;
  url: string;
  peer: string | null;
  activeUrl: string | null;
  uptimeMs: number;
  servers: {
    id: string;
    url: string;
    state: string;
    inflight: number;
    load: number;
    version: string | null;
    agentState: string | null;
    draining: boolean;
    routed: boolean;
    reason: string | null;
    lastHeartbeatMsAgo: number | null;
  }[];
  license: { state: string; daysLeft: number | null; customer?: string; servers: { licensed: number | null; used: number }; warnings: string[] };
  boosters: { id: string; url: string; role: string; epoch: number; pid: number | null; lastSeenAt: string }[];
  rollout?: {
    id: number;
    version: string;
    state: string;
    haltedReason: string | null;
    nodes: { serverId: string; state: string; toVersion: string; error: string | null }[];
  } | null;
};

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (c ?? '').padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags } = parseFlags(argv, ['help', 'json']);
  if (flags.help) {
    ctx.stdout.write(HELP);
    return 0;
  }
  const base = (typeof flags.booster === 'string' ? flags.booster : `http://127.0.0.1:${DEFAULT_PORT.booster}`).replace(/\/+$/, '');
  const limit = typeof flags.events === 'string' ? Number(flags.events) || 10 : 10;
  let st: Status;
  let events: { createdAt: string; kind: string; subject: string | null; boosterId: string; epoch: number }[] = [];
  try {
    const creds = controlCredentials(ctx);
    const r = await getControl(base, BOOSTER_PATH.status, creds);
    if (r.status === 401) {
      ctx.stderr.write(`omflow status: the booster at ${base} wants credentials: set OMFLOW_CLUSTER_SECRET(_FILE) or OMFLOW_BOOSTER_OPERATOR_TOKEN(_FILE)\n`);
      return 1;
    }
    if (r.status !== 200) throw new Error(`answered HTTP ${r.status}`);
    st = r.body as Status;
    const e = await getControl(base, `${BOOSTER_PATH.events}?limit=${limit}`, creds);
    if (e.status === 200) events = (e.body as { events: typeof events }).events;
  } catch (err) {
    ctx.stderr.write(`omflow status: cannot reach the booster at ${base}: ${(err as Error).message}\n`);
    return 1;
  }
  if (flags.json) {
    ctx.stdout.write(`${JSON.stringify({ ...st, events }, null, 2)}\n`);
    return 0;
  }
  const out: string[] = [];
  out.push(`Booster ${st.nodeId} (${st.url}) is ${st.role.toUpperCase()}, epoch ${st.epoch}; active: ${st.activeUrl ?? 'none'}; peer: ${st.peer ?? 'none'}`);
  out.push('', 'BOOSTERS');
  out.push(
    table([
      ['ID', 'URL', 'ROLE', 'EPOCH', 'PID', 'LAST SEEN'],
      ...st.boosters.map((b) => [b.id, b.url, b.role, String(b.epoch), String(b.pid ?? ''), b.lastSeenAt]),
    ]),
  );
  out.push('', 'SERVERS');
  out.push(
    table([
      ['ID', 'URL', 'STATE', 'AGENT', 'VERSION', 'INFLIGHT', 'LOAD', 'HEARTBEAT', 'NOTE'],
      ...st.servers.map((s) => [
        s.id,
        s.url,
        s.state,
        s.agentState ?? '-',
        s.version ?? '-',
        String(s.inflight),
        s.load.toFixed(1),
        s.lastHeartbeatMsAgo === null ? 'never' : `${(s.lastHeartbeatMsAgo / 1000).toFixed(1)}s ago`,
        s.routed ? '' : (s.reason ?? 'not routed'),
      ]),
    ]),
  );
  const l = st.license;
  out.push(
    '',
    `LICENSE  ${l.state}${l.daysLeft !== null ? `, ${l.daysLeft} day(s) left` : ''}${l.customer ? `, ${l.customer}` : ''}; servers ${l.servers.used}/${l.servers.licensed ?? 'unlimited'}`,
  );
  for (const w of l.warnings) out.push(`  ! ${w}`);
  const ro = st.rollout;
  out.push('', ro ? `ROLLOUT  #${ro.id} to ${ro.version}: ${ro.state}${ro.haltedReason ? ` (halted: ${ro.haltedReason})` : ''}` : 'ROLLOUT  none');
  if (ro) for (const n of ro.nodes) out.push(`  ${n.serverId}  ${n.state}  → ${n.toVersion}${n.error ? `  ${n.error}` : ''}`);
  out.push('', 'RECENT EVENTS');
  out.push(
    events.length
      ? table([['TIME', 'KIND', 'SUBJECT', 'BY', 'EPOCH'], ...events.map((e) => [e.createdAt, e.kind, e.subject ?? '', e.boosterId, String(e.epoch)])])
      : '(none)',
  );
  ctx.stdout.write(`${out.join('\n')}\n`);
  return 0;
}
