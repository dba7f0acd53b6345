import { existsSync } from 'node:fs';
import { type CheckResult, checkBooster, checkDatabase, checkWritable, type RoleCheck } from '../common/cli/config-command.js';
import { boosterUrlsOf } from '../common/config/areas/boosters.js';
import { trustedKeysFromConfig } from '../common/patch/index.js';
import { AGENT_AREAS } from './agent.js';

/**
 * `omflow config check` of an agent configuration (the app server reads the same file), beyond
 * the keys: the trusted patch keys, the data directory, the bootstrap release, the database and
 * the Boosters it heartbeats to.
 */
export const configCheck: RoleCheck<typeof AGENT_AREAS> = {
  areas: AGENT_AREAS,
  async run(c) {
    const out: CheckResult[] = [];
    try {
      const trusted = trustedKeysFromConfig(c.agent);
      out.push({
        level: 'ok',
        name: 'trusted patch keys',
        detail: `${trusted.keys.size} key(s), the vendor's included: ${[...trusted.keys.keys()].join(', ')}`,
      });
    } catch (err) {
      out.push({ level: 'fail', name: 'trusted patch keys', detail: (err as Error).message });
    }
    out.push(checkWritable('data directory', c.cluster.dataDir, 'directory'));
    const boot = c.agent.bootstrapDir;
    if (boot && !existsSync(boot)) out.push({ level: 'fail', name: 'OMFLOW_AGENT_BOOTSTRAP_DIR', detail: `${boot} does not exist` });
    out.push(await checkDatabase(c.database));
    const urls = boosterUrlsOf(c.boosters);
    if (urls.length === 0) out.push({ level: 'warn', name: 'Boosters', detail: 'BOOSTER_IP is empty: the app server runs on its own, with no Booster' });
    for (const [i, url] of urls.entries())
      out.push(await checkBooster(i === 0 ? 'Booster' : 'HA Booster', url, { secret: c.cluster.secret, nodeId: c.cluster.nodeId }));
    return out;
  },
};
