import type { boostersArea, clusterArea, databaseArea, serverArea } from '../common/config/areas/index.js';
import type { LoadedConfig } from '../common/config/load.js';

/** The areas `omflow server` loads: cluster, database, boosters, server. */
export type ServerConfig = LoadedConfig<[typeof clusterArea, typeof databaseArea, typeof boostersArea, typeof serverArea]>;
