import { boostersArea, clusterArea, databaseArea, serverArea } from '../common/config/areas/index.js';
import type { LoadedConfig } from '../common/config/load.js';

/** The areas `omflow server` loads: cluster, database, boosters, server. */
export const SERVER_AREAS = [clusterArea, databaseArea, boostersArea, serverArea] as const;
export type ServerConfig = LoadedConfig<typeof SERVER_AREAS>;
