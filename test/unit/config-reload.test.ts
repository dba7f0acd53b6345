import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { boosterArea } from '../../common/config/areas/booster.js';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { configOrigin, diffConfig, loadConfig, reloadConfig } from '../../common/config/load.js';

/** Reading a configuration again (SIGHUP): which source wins, which changes apply in place. */
const SECRET = 'a-cluster-secret-of-enough-length';
const dir = mkdtempSync(join(tmpdir(), 'omflow-config-reload-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const AREAS = [clusterArea, boosterArea] as const;

describe('configuration reload', () => {
  it('follows the file for values systemd copied from it into the environment; a value set elsewhere still wins', () => {
    const file = join(dir, 'booster.env');
    writeFileSync(file, `OMFLOW_CLUSTER_SECRET=${SECRET}\nOMFLOW_BOOSTER_QUEUE_SIZE=100\nOMFLOW_BOOSTER_MAX_ATTEMPTS=2\n`);
    // What EnvironmentFile= does at start, plus one variable from a drop-in's Environment=.
    const env = { OMFLOW_CLUSTER_SECRET: SECRET, OMFLOW_BOOSTER_QUEUE_SIZE: '100', OMFLOW_BOOSTER_MAX_ATTEMPTS: '2', OMFLOW_BOOSTER_RETRY_BUDGET_PERCENT: '5' };
    const origin = configOrigin({ env, file });
    const start = loadConfig(AREAS, origin.sources);
    expect(start.booster.queueSize).toBe(100);

    writeFileSync(file, `OMFLOW_CLUSTER_SECRET=${SECRET}\nOMFLOW_BOOSTER_QUEUE_SIZE=200\nOMFLOW_BOOSTER_RETRY_BUDGET_PERCENT=50\n`);
    const next = reloadConfig(AREAS, origin);
    expect(next.booster.queueSize).toBe(200); // the file's new value, not the environment's copy of the old one
    expect(next.booster.maxAttempts).toBe(boosterArea.keys.maxAttempts.default); // removed from the file: the default again
    expect(next.booster.retryBudgetPercent).toBe(5); // set outside the file: still wins, as at start
  });

  it('names changed keys by variable, split into those applied in place and those that need a restart', () => {
    const load = (o: Record<string, string | number>) => loadConfig(AREAS, { env: {}, overrides: { OMFLOW_CLUSTER_SECRET: SECRET, ...o } });
    const before = load({ OMFLOW_BOOSTER_OPERATOR_TOKEN: 'a'.repeat(24), OMFLOW_BOOSTER_PORT: 5169 });
    const after = load({
      OMFLOW_BOOSTER_OPERATOR_TOKEN: 'b'.repeat(24),
      OMFLOW_BOOSTER_PORT: 5170,
      OMFLOW_LOG_LEVEL: 'debug',
      OMFLOW_BOOSTER_ACCESS_LOG: 'json',
      // A person's write token added (the lab: a token may not need a restart, which moves the active role).
      OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS: `alice:${'c'.repeat(24)}`,
    });
    const changes = diffConfig(AREAS, before, after);
    expect(changes.inPlace.sort()).toEqual([
      'OMFLOW_BOOSTER_ACCESS_LOG',
      'OMFLOW_BOOSTER_OPERATOR_TOKEN',
      'OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS',
      'OMFLOW_LOG_LEVEL',
    ]);
    expect(changes.needsRestart).toEqual(['OMFLOW_BOOSTER_PORT']);
    expect(diffConfig(AREAS, before, before)).toEqual({ inPlace: [], needsRestart: [] });
  });
});
