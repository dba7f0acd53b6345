import { defineErrors } from '../common/errors.js';
import { PatchErrors } from '../common/patch/errors.js';

/** Stable codes of the agent and of patch handling. docs/errors.md is generated from here. */
const AgentOnlyErrors = defineErrors({
  AGENT_ERR_START_TIMEOUT: {
    status: 500,
    message: 'The app server did not pass its deep check within the start timeout',
    hint: 'Read the server log; raise OMFLOW_AGENT_START_TIMEOUT_MS if the host is slow.',
  },
  AGENT_ERR_SERVER_EXITED: {
    status: 500,
    message: 'The app server exited while it was starting',
    hint: 'Read the server log (OMFLOW_DATA_DIR/logs/server.log).',
  },
  AGENT_ERR_NODE_FAILED: {
    status: 503,
    message: 'The app server failed too often and the agent stopped restarting it',
    hint: 'Fix the cause in the server log, then `omflow agent restart` (POST /_agent/restart) to try again.',
  },
  AGENT_ERR_ALREADY_RUNNING: {
    status: 409,
    message: 'Another agent already runs on this data directory',
    hint: 'Stop the other agent (see OMFLOW_DATA_DIR/agent.pid) or use another OMFLOW_DATA_DIR.',
  },
  AGENT_ERR_NO_RELEASE: {
    status: 500,
    message: 'No release is installed and none could be bootstrapped',
    hint: 'Check OMFLOW_DATA_DIR is writable and OMFLOW_AGENT_BOOTSTRAP_DIR (or the install) holds common/bin/omflow.mjs.',
  },
  AGENT_ERR_NOT_RUNNING: {
    status: 503,
    message: 'No agent answers on this node',
    hint: 'Start it with `omflow agent` (systemd: omflow-booster-agent).',
  },
});

/** The agent's own codes plus the patch codes (common/patch/errors.ts, shared with the admin page). */
export const AgentErrors = Object.freeze({ ...AgentOnlyErrors, ...PatchErrors });

export type AgentErrorCode = keyof typeof AgentErrors;
