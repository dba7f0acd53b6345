import { hostname } from 'node:os';
import { defineArea, oneOf, str } from '../define.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Keys every process of a cluster reads. */
export const clusterArea = defineArea({
  name: 'cluster',
  title: 'Cluster (every process)',
  keys: {
    secret: str('OMFLOW_CLUSTER_SECRET', {
      doc: 'Shared secret authenticating heartbeats, dispatches and control calls between boosters, agents and servers (HMAC). At least 16 characters; the same on every host. Prefer OMFLOW_CLUSTER_SECRET_FILE.',
      required: true,
      secret: true,
    }),
    nodeId: str('OMFLOW_NODE_ID', {
      doc: 'Stable id of this process in the cluster (letters, digits, . _ -). Defaults to the host name plus the role.',
      default: hostname(),
      defaultDoc: 'the host name',
      pattern: /^[A-Za-z0-9._-]{1,64}$/,
    }),
    dataDir: str('OMFLOW_DATA_DIR', { doc: 'Directory for local state (releases, pid files).', default: '/var/lib/omflow' }),
    logLevel: oneOf('OMFLOW_LOG_LEVEL', LOG_LEVELS, { doc: 'Log level (pino).', default: 'info', reload: true }),
  },
  check(values, report) {
    if (values.secret !== undefined && values.secret.length < 16) report('OMFLOW_CLUSTER_SECRET', 'must be at least 16 characters');
  },
});
