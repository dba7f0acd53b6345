import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { registerBuildInfo } from '../common/metrics/build-info.js';
import { AGENT_STATES, type AgentState } from '../common/protocol/messages.js';

/** What the metrics read of the agent's status (Agent.status()). */
export interface AgentStatusView {
  state: AgentState;
  version: string | null;
  sequence: number | null;
  rolloutError: string | null;
}

/**
 * The agent's /_agent/metrics: the state of the app server it supervises (an alert on `failed`
 * or a long `degraded`), its recent recoveries, the release it runs, the last rollout error.
 * Everything is read from the agent's status at scrape time.
 */
export function createAgentMetrics(d: { node: string; version: string | null; status: () => AgentStatusView; recentRecoveries: () => number }): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'omflow_agent_' });
  registerBuildInfo(registry, { role: 'agent', version: d.version, node: d.node });
  const registers = [registry];
  new Gauge({
    name: 'omflow_agent_server_state',
    help: 'The app server this agent supervises: 1 for its current state (starting, running, degraded, recovering, stopping, stopped, patching, failed)',
    labelNames: ['state'] as const,
    registers,
    collect() {
      const now = d.status().state;
      for (const s of AGENT_STATES) this.labels(s).set(s === now ? 1 : 0);
    },
  });
  new Gauge({
    name: 'omflow_agent_server_recoveries',
    help: 'Restarts of the app server after failed checks within OMFLOW_AGENT_RECOVERY_WINDOW_MS (the node is marked failed at OMFLOW_AGENT_MAX_RECOVERIES)',
    registers,
    collect() {
      this.set(d.recentRecoveries());
    },
  });
  new Gauge({
    name: 'omflow_agent_release_info',
    help: 'Always 1: the release (version, patch sequence) the app server runs',
    labelNames: ['version', 'sequence'] as const,
    registers,
    collect() {
      this.reset();
      const s = d.status();
      this.labels(s.version ?? 'unknown', String(s.sequence ?? 0)).set(1);
    },
  });
  new Gauge({
    name: 'omflow_agent_rollout_error',
    help: '1 while the last rollout step of this agent failed (the error is in `omflow agent status`)',
    registers,
    collect() {
      this.set(d.status().rolloutError ? 1 : 0);
    },
  });
  return registry;
}
