import { agentArea } from './agent.js';
import { boosterArea } from './booster.js';
import { clusterArea } from './cluster.js';
import { databaseArea } from './database.js';
import { serverArea } from './server.js';

export { agentArea, boosterArea, clusterArea, databaseArea, serverArea };

/** Every area, in the order of docs/configuration.md. */
export const ALL_AREAS = [clusterArea, databaseArea, boosterArea, serverArea, agentArea] as const;
