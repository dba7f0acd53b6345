import type { CliContext } from '../../common/cli/context.js';
import { parseFlags } from '../../common/cli/context.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { boosterBase, callControl, controlCredentials } from './control-client.js';

const HELP = `Usage: omflow status [--booster URL] [--json] [--events N]

Prints the cluster as seen by a Booster (default OMFLOW_OPERATOR_BOOSTER_URL, else
http://127.0.0.1:5169): boosters, servers with their agent state, license, maintenance mode,
quarantined steps, duplicate node ids and recent events. Sends OMFLOW_OPERATOR_TOKEN, else signs
with OMFLOW_CLUSTER_SECRET when configured, else sends OMFLOW_BOOSTER_OPERATOR_TOKEN.
`;

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
    weight?: number;
  }[];
  maintenance?: { on: boolean; message: string | null; since: string | null; by: string | null };
  duplicateNodeIds?: { id: string; url: string; registeredUrl: string; lastSeenMsAgo: number }[];
  quarantinedSteps?: {
    total: number;
    steps: { id: number; ticketNo: string | null; stepKey: string; reason: string; lostRuns: number; lastServer: string | null; since: string | null }[];
  } | null;
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
  const base = boosterBase(flags.booster, ctx);
  const limit = typeof flags.events === 'string' ? Number(flags.events) || 10 : 10;
  let st: Status;
  let events: { createdAt: string; kind: string; subject: string | null; boosterId: string; epoch: number }[] = [];
  try {
    const creds = controlCredentials(ctx);
    const r = await callControl(base, 'GET', BOOSTER_PATH.status, creds, undefined, 5000);
    if (r.status === 401) {
      ctx.stderr.write(
        `omflow status: the booster at ${base} wants credentials: set OMFLOW_OPERATOR_TOKEN(_FILE), OMFLOW_CLUSTER_SECRET(_FILE) or OMFLOW_BOOSTER_OPERATOR_TOKEN(_FILE)\n`,
      );
      return 1;
    }
    if (r.status !== 200) throw new Error(`answered HTTP ${r.status}`);
    st = r.body as Status;
    const e = await callControl(base, 'GET', `${BOOSTER_PATH.events}?limit=${limit}`, creds, undefined, 5000);
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
  const m = st.maintenance;
  if (m?.on) out.push(`MAINTENANCE MODE ON since ${m.since ?? '?'} by ${m.by ?? '?'}: users get the maintenance page${m.message ? ` ("${m.message}")` : ''}`);
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
      ['ID', 'URL', 'STATE', 'WEIGHT', 'AGENT', 'VERSION', 'INFLIGHT', 'LOAD', 'HEARTBEAT', 'NOTE'],
      ...st.servers.map((s) => [
        s.id,
        s.url,
        s.state,
        String(s.weight ?? ''),
        s.agentState ?? '-',
        s.version ?? '-',
        String(s.inflight),
        s.load.toFixed(1),
        s.lastHeartbeatMsAgo === null ? 'never' : `${(s.lastHeartbeatMsAgo / 1000).toFixed(1)}s ago`,
        s.routed ? '' : (s.reason ?? 'not routed'),
      ]),
    ]),
  );
  const dups = st.duplicateNodeIds ?? [];
  if (dups.length) {
    out.push('', 'DUPLICATE NODE IDS (refused heartbeats: give each server its own OMFLOW_NODE_ID)');
    out.push(
      table([
        ['ID', 'REFUSED URL', 'KEEPS THE ID', 'LAST REFUSED'],
        ...dups.map((d) => [d.id, d.url, d.registeredUrl, `${(d.lastSeenMsAgo / 1000).toFixed(1)}s ago`]),
      ]),
    );
  }
  const q = st.quarantinedSteps;
  if (q?.total) {
    out.push('', `QUARANTINED STEPS: ${q.total} (their runs were lost; run them again or fail their tickets on the admin Cluster page)`);
    out.push(
      table([
        ['STEP', 'TICKET', 'KEY', 'REASON', 'LOST RUNS', 'LAST SERVER', 'SINCE'],
        ...q.steps.map((x) => [String(x.id), x.ticketNo ?? '', x.stepKey, x.reason, String(x.lostRuns), x.lastServer ?? '', x.since ?? '']),
      ]),
    );
  }
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
