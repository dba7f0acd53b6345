import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { audienceOf, signClusterRequest, verifyClusterRequest } from '../../common/protocol/cluster-auth.js';
import { AGENT_PATH, BOOSTER_PATH } from '../../common/protocol/headers.js';
import { waitFor } from '../helpers/poll.js';
import { freePort, type RunningProcess, startOmflow } from '../helpers/processes.js';
import { FIXTURE_RELEASE } from './helpers.js';

export const SECRET = 'agent-test-secret-0123456789';

export interface RecordedCall {
  path: string;
  node: string;
  body: any;
}

/** Stand-in booster on loopback: accepts only correctly signed calls and records them. */
export async function startBoosterRecorder(): Promise<{ port: number; calls: RecordedCall[]; rejected: number; agentPorts: number[]; close(): Promise<void> }> {
  const state = { calls: [] as RecordedCall[], rejected: 0 };
  const agentPorts: number[] = [];
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const auth = verifyClusterRequest(SECRET, { method: req.method!, path: req.url!, headers: req.headers, body });
      if (!auth.ok) {
        state.rejected++;
        res.writeHead(401).end();
        return;
      }
      state.calls.push({ path: req.url!, node: auth.nodeId, body: body.length ? JSON.parse(body.toString()) : null });
      // Like the real booster: fan a patch notice out to every agent it knows.
      if (req.url === BOOSTER_PATH.patchNotice)
        for (const port of agentPorts)
          void fetch(`http://127.0.0.1:${port}${AGENT_PATH.patchNotice}`, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              ...signClusterRequest(SECRET, 'recorder', 'POST', AGENT_PATH.patchNotice, body.toString(), Date.now(), {
                audience: audienceOf(`http://127.0.0.1:${port}`),
              }),
            },
            body: body.toString(),
          }).catch(() => undefined);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    agentPorts,
    get calls() {
      return state.calls;
    },
    get rejected() {
      return state.rejected;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface AgentNode {
  nodeId: string;
  dataDir: string;
  agentPort: number;
  serverPort: number;
  env: Record<string, string>;
  proc: RunningProcess;
  controlFile: string;
  start(): RunningProcess;
}

export const FAST_TIMINGS: Record<string, string> = {
  OMFLOW_AGENT_START_TIMEOUT_MS: '15000',
  OMFLOW_AGENT_STOP_TIMEOUT_MS: '3000',
  OMFLOW_AGENT_DRAIN_TIMEOUT_MS: '2000',
  OMFLOW_AGENT_DRAIN_SETTLE_MS: '50',
  OMFLOW_AGENT_QUICK_CHECK_INTERVAL_MS: '200',
  OMFLOW_AGENT_QUICK_CHECK_TIMEOUT_MS: '1000',
  OMFLOW_AGENT_DEEP_CHECK_INTERVAL_MS: '500',
  OMFLOW_AGENT_DEEP_CHECK_TIMEOUT_MS: '2000',
  OMFLOW_AGENT_FAILURE_THRESHOLD: '2',
  OMFLOW_AGENT_RECOVERY_BACKOFF_MS: '50',
  OMFLOW_AGENT_RECOVERY_BACKOFF_MAX_MS: '200',
  OMFLOW_AGENT_MAX_RECOVERIES: '3',
  OMFLOW_AGENT_RECOVERY_WINDOW_MS: '60000',
  OMFLOW_AGENT_REPORT_INTERVAL_MS: '1000',
  OMFLOW_AGENT_PATCH_POLL_MS: '500',
  OMFLOW_AGENT_SOAK_MS: '600',
  OMFLOW_AGENT_ROLLOUT_LOCK_TTL_MS: '20000',
};

export async function makeAgentNode(opts: { nodeId: string; dbUrl: string; boosterPort?: number; extraEnv?: Record<string, string> }): Promise<AgentNode> {
  const dataDir = mkdtempSync(join(tmpdir(), `omflow-agent-${opts.nodeId}-`));
  const [agentPort, serverPort] = [await freePort(), await freePort()];
  const controlFile = join(dataDir, 'fixture-control');
  writeFileSync(controlFile, 'ok');
  const env: Record<string, string> = {
    OMFLOW_CLUSTER_SECRET: SECRET,
    OMFLOW_NODE_ID: opts.nodeId,
    OMFLOW_DATA_DIR: dataDir,
    OMFLOW_DB_URL: opts.dbUrl,
    OMFLOW_DB_POOL_MAX: '3',
    OMFLOW_AGENT_HOST: '127.0.0.1',
    OMFLOW_AGENT_PORT: String(agentPort),
    OMFLOW_SERVER_HOST: '127.0.0.1',
    OMFLOW_SERVER_PORT: String(serverPort),
    OMFLOW_AGENT_BOOTSTRAP_DIR: FIXTURE_RELEASE,
    OMFLOW_LOG_LEVEL: 'warn',
    FIXTURE_CONTROL_FILE: controlFile,
    ...(opts.boosterPort ? { BOOSTER_IP: '127.0.0.1', BOOSTER_PORT: String(opts.boosterPort) } : {}),
    ...FAST_TIMINGS,
    ...opts.extraEnv,
  };
  const node: AgentNode = {
    nodeId: opts.nodeId,
    dataDir,
    agentPort,
    serverPort,
    env,
    controlFile,
    proc: undefined as unknown as RunningProcess,
    start() {
      node.proc = startOmflow(`agent-${opts.nodeId}`, ['agent'], env);
      return node.proc;
    },
  };
  return node;
}

export async function agentCall(node: AgentNode, method: 'GET' | 'POST', path: string): Promise<any> {
  const body = method === 'POST' ? '{}' : undefined;
  const res = await fetch(`http://127.0.0.1:${node.agentPort}${path}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...signClusterRequest(SECRET, 'test', method, path, body, Date.now(), { audience: audienceOf(`http://127.0.0.1:${node.agentPort}`) }),
    },
    body,
    signal: AbortSignal.timeout(5000),
  });
  return res.json();
}

export const agentStatus = (node: AgentNode) => agentCall(node, 'GET', AGENT_PATH.status);

export async function waitForState(node: AgentNode, state: string, timeoutMs = 30_000): Promise<any> {
  return waitFor(
    async () => {
      if (node.proc.child.exitCode !== null) throw new Error(`agent exited: ${node.proc.output().slice(-2000)}`);
      const s = await agentStatus(node);
      return s.state === state ? s : null;
    },
    { timeoutMs, intervalMs: 100, what: `${node.nodeId} state ${state}` },
  );
}

export function serverPid(node: AgentNode): number | null {
  try {
    return JSON.parse(readFileSync(join(node.dataDir, 'server.pid'), 'utf8')).pid;
  } catch {
    return null;
  }
}

/** Every live process running a release of this node's data dir as `server`. */
export function serverProcesses(node: AgentNode): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (cmd.some((a) => a.startsWith(`${join(node.dataDir, 'releases')}/`)) && cmd.includes('server')) out.push(Number(entry));
    } catch {
      /* gone */
    }
  }
  return out;
}

export async function fetchVersion(node: AgentNode): Promise<string | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${node.serverPort}/healthz`, { signal: AbortSignal.timeout(2000) });
    return ((await res.json()) as { version: string }).version;
  } catch {
    return null;
  }
}

/** Last resort cleanup: kill the server group of a node by its pid file. */
export function killServerGroup(node: AgentNode): void {
  for (const pid of [serverPid(node), ...serverProcesses(node)]) {
    if (!pid) continue;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

/** Dead or a zombie waiting for a (slow) init to reap it. */
export function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}
