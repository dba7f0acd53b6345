import { defineErrors } from '../common/errors.js';

/** Stable codes of the agent and of patch handling. docs/errors.md is generated from here. */
export const AgentErrors = defineErrors({
  AGENT_ERR_START_TIMEOUT: {
    status: 500,
    message: 'The app server did not pass its deep check within the start timeout',
    hint: 'Read the server log; raise OMFLOW_AGENT_START_TIMEOUT_MS if the host is slow.',
  },
});
