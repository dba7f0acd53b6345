import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { databaseArea } from '../../common/config/areas/database.js';
import { loadConfig, parseEnvFile } from '../../common/config/load.js';
import { OmflowError } from '../../common/errors.js';

const SECRET = 'a-cluster-secret-of-enough-length';

function problemsOf(fn: () => unknown): { key: string; message: string }[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(OmflowError);
    expect((err as OmflowError).code).toBe('COMMON_ERR_CONFIG_INVALID');
    return ((err as OmflowError).details as { problems: { key: string; message: string }[] }).problems;
  }
  throw new Error('expected the configuration to be refused');
}

describe('configuration', () => {
  const cleanupDirs: string[] = [];
  afterAll(() => {
    for (const d of cleanupDirs) rmSync(d, { recursive: true, force: true });
  });

  it('reports every problem at once, each by key', () => {
    const problems = problemsOf(() =>
      loadConfig([databaseArea, clusterArea], {
        env: { OMFLOW_DB_URL: 'sqlite:///var/omflow.db', OMFLOW_DB_POOL_MAX: 'many', OMFLOW_LOG_LEVEL: 'loud' },
      }),
    );
    const keys = problems.map((p) => p.key).sort();
    expect(keys).toEqual(['OMFLOW_CLUSTER_SECRET', 'OMFLOW_DB_POOL_MAX', 'OMFLOW_DB_URL', 'OMFLOW_LOG_LEVEL'].sort());
    expect(problems.find((p) => p.key === 'OMFLOW_DB_URL')!.message).toMatch(/SQLite is refused/);
  });

  it.each([
    ['unknown scheme', 'redis://u:p@h/db', /unknown scheme/],
    ['malformed port', 'postgres://u:p@h:99x/db', /malformed port/],
    ['port out of range', 'postgres://u:p@h:70000/db', /malformed port/],
    ['no database', 'mysql://u:p@h:3306/', /no database name/],
  ])('refuses a database URL with %s', (_name, url, pattern) => {
    const problems = problemsOf(() => loadConfig([databaseArea], { env: { OMFLOW_DB_URL: url } }));
    expect(problems.find((p) => p.key === 'OMFLOW_DB_URL')?.message).toMatch(pattern);
  });

  it('requires a password when neither URL nor key carries one', () => {
    const problems = problemsOf(() => loadConfig([databaseArea], { env: { OMFLOW_DB_URL: 'postgres://omflow@db.example/omflow' } }));
    expect(problems.map((p) => p.key)).toEqual(['OMFLOW_DB_PASSWORD']);
  });

  it('layers defaults < file < environment and reads *_FILE secrets', () => {
    const dir = mkdtempSync(join(tmpdir(), 'omflow-config-'));
    cleanupDirs.push(dir);
    writeFileSync(join(dir, 'secret'), `${SECRET}\n`);
    writeFileSync(join(dir, 'omflow.env'), `# comment\nOMFLOW_DB_HOST=file-host\nOMFLOW_DB_NAME="from file"\nOMFLOW_DB_PASSWORD=pw\nOMFLOW_LOG_LEVEL=debug\n`);
    const config = loadConfig([databaseArea, clusterArea], {
      file: join(dir, 'omflow.env'),
      env: { OMFLOW_DB_HOST: 'env-host', OMFLOW_CLUSTER_SECRET_FILE: join(dir, 'secret') },
    });
    expect(config.database.host).toBe('env-host');
    expect(config.database.name).toBe('from file');
    expect(config.database.port).toBeUndefined();
    expect(config.cluster.secret).toBe(SECRET);
    expect(config.cluster.logLevel).toBe('debug');
    expect(Object.isFrozen(config) && Object.isFrozen(config.database)).toBe(true);
  });

  it('parses systemd EnvironmentFile syntax', () => {
    expect(parseEnvFile('A=1\n  # x\nexport B = "two words"\nC=\'x=y\'\nnot a line\n')).toEqual({ A: '1', B: 'two words', C: 'x=y' });
  });
});
