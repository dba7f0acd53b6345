import type { boosterArea } from '../common/config/areas/booster.js';
import type { clusterArea } from '../common/config/areas/cluster.js';
import type { AreaValues } from '../common/config/define.js';

/** The settings a booster runs with, as common/config loads them ("Booster" and "Cluster" in docs/configuration.md). */
export type BoosterConfig = AreaValues<(typeof boosterArea)['keys']>;
export type ClusterConfig = AreaValues<(typeof clusterArea)['keys']>;
