import { join } from 'node:path';
import type { CliContext } from '../common/cli/context.js';
import { parseFlags } from '../common/cli/context.js';
import { agentArea, clusterArea, serverArea } from '../common/config/areas/index.js';
import { configOrigin, loadConfig } from '../common/config/load.js';
import { reloadOnSighup } from '../common/config/reload-signal.js';
import { createLogger } from '../common/log.js';
import { audienceOf, signClusterRequest } from '../common/protocol/cluster-auth.js';
import { AGENT_PATH } from '../common/protocol/headers.js';
import { createServiceNotifier, withoutServiceManagerVars } from '../common/systemd-notify.js';
import { AGENT_AREAS, Agent, type AgentStatus } from './agent.js';
import { AgentErrors } from './errors.js';
import { readJsonFile } from './process-control.js';

const HELP = `Usage: omflow agent [status [--json] | restart]

  omflow agent           run the agent: starts and supervises the app server, rolls out patches
  omflow agent status    print the state of the local agent and its app server
  omflow agent restart   operator restart of the app server (also leaves the "failed" state)

Configuration: docs/configuration.md (cluster, database, boosters, server, agent).
`;

async function callLocalAgent(ctx: CliContext, method: 'GET' | 'POST', path: string): Promise<unknown> {
  const c = loadConfig([clusterArea, serverArea, agentArea], { env: ctx.env, file: ctx.configFile });
  const recorded = readJsonFile<{ url: string }>(join(c.cluster.dataDir, 'agent.json'));
  const host = c.agent.host === '0.0.0.0' ? '127.0.0.1' : c.agent.host;
  const base = recorded?.url ?? c.server.agentUrl ?? `http://${host}:${c.agent.port}`;
  const body = method === 'POST' ? '{}' : undefined;
  try {
    const res = await fetch(base + path, {
      method,
      headers: {
        'content-type': 'application/json',
        ...signClusterRequest(c.cluster.secret, c.cluster.nodeId, method, path, body, Date.now(), { audience: audienceOf(base) }),
      },
      body,
      signal: AbortSignal.timeout(5000),
    });
    const json = await res.json();
    if (!res.ok) throw AgentErrors.AGENT_ERR_NOT_RUNNING(`agent at ${base} answered ${res.status}: ${JSON.stringify(json)}`);
    return json;
  } catch (err) {
    if ((err as { code?: string }).code?.startsWith('AGENT_ERR')) throw err;
    throw AgentErrors.AGENT_ERR_NOT_RUNNING(`no agent answers at ${base}`, undefined, { cause: err });
  }
}

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags(argv, ['json', 'help']);
  if (flags.help) {
    ctx.stdout.write(HELP);
    return 0;
  }
  const sub = positionals[0];
  if (sub === 'status') {
    const s = (await callLocalAgent(ctx, 'GET', AGENT_PATH.status)) as AgentStatus;
    if (flags.json) ctx.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
    else
      ctx.stdout.write(
        `${[
          `node:      ${s.nodeId}`,
          `state:     ${s.state}${s.detail ? ` (${s.detail})` : ''}`,
          `server:    ${s.serverUrl} pid ${s.pid ?? '-'}`,
          `version:   ${s.version ?? '-'} (sequence ${s.sequence ?? '-'})`,
          `releases:  ${s.releases.map((r) => `${r.version}#${r.sequence}`).join(', ') || '-'}`,
          `agent:     ${s.agentUrl}${s.drainedByAgent ? ' (node drained by the agent)' : ''}`,
          ...(s.rolloutError ? [`rollout:   ${s.rolloutError}`] : []),
        ].join('\n')}\n`,
      );
    return s.state === 'failed' ? 1 : 0;
  }
  if (sub === 'restart') {
    ctx.stdout.write(`${JSON.stringify(await callLocalAgent(ctx, 'POST', AGENT_PATH.restart))}\n`);
    return 0;
  }
  if (sub !== undefined) {
    ctx.stderr.write(`omflow agent: unknown subcommand "${sub}"\n\n${HELP}`);
    return 2;
  }
  const origin = configOrigin({ env: ctx.env, file: ctx.configFile });
  const config = loadConfig(AGENT_AREAS, origin.sources);
  const log = createLogger({ name: 'agent', level: config.cluster.logLevel, nodeId: config.cluster.nodeId });
  const env = { ...withoutServiceManagerVars(ctx.env), ...(ctx.configFile ? { OMFLOW_CONFIG: ctx.configFile } : {}) };
  const agent = new Agent({ config, env, log });
  const systemd = createServiceNotifier({ env: ctx.env, log });
  // SIGHUP (systemctl reload): the file is read again, the reloadable settings apply in place.
  const stopReloading = reloadOnSighup(AGENT_AREAS, origin, log, (next) => agent.reload(next));
  const stopping = ctx.stopSignal.then(() => 'stop' as const);
  const started = agent.start().then(() => 'started' as const);
  try {
    if ((await Promise.race([started, stopping])) === 'stop') {
      await started.catch(() => undefined);
    } else {
      const describe = () => {
        const s = agent.status();
        return `app server ${s.state}${s.version ? ` (${s.version})` : ''}`;
      };
      systemd.ready(describe());
      systemd.follow(describe, 5000);
      await stopping;
    }
  } finally {
    log.info('agent stopping');
    // The graceful stop: drain settle + drain + the server's stop, and a margin for the rest.
    const a = config.agent;
    systemd.stopping(a.drainSettleMs + a.drainTimeoutMs + a.stopTimeoutMs + 15_000);
    stopReloading();
    try {
      await agent.close();
    } finally {
      systemd.close();
    }
  }
  return 0;
}
