import { defineArea, int, str } from '../define.js';

/** Keys of `omflow agent`. Owned by agent/. */
export const agentArea = defineArea({
  name: 'agent',
  title: 'Booster Agent (omflow agent)',
  keys: {
    host: str('OMFLOW_AGENT_HOST', { doc: 'Address of the agent control API.', default: '0.0.0.0' }),
    port: int('OMFLOW_AGENT_PORT', { doc: 'Port of the agent control API (on a shared host, the next free port is taken).', default: 5169, min: 0, max: 65535 }),
  },
});
