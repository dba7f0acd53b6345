import { agentArea } from './agent.js';
import { boosterArea } from './booster.js';
import { boostersArea } from './boosters.js';
import { clusterArea } from './cluster.js';
import { databaseArea } from './database.js';
import { operatorArea } from './operator.js';
import { serverArea } from './server.js';

export { agentArea, boosterArea, boostersArea, clusterArea, databaseArea, operatorArea, serverArea };

/** Every area, in the order of docs/configuration.md. */
export const ALL_AREAS = [clusterArea, databaseArea, boosterArea, boostersArea, serverArea, agentArea, operatorArea] as const;
