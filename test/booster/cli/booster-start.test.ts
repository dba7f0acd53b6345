import { type ChildProcess, spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, OMFLOW_BIN } from '../../helpers/processes.js';

/**
 * `omflow booster` as systemd starts it, with the database not up yet (a host that boots before
 * its database): the process must end with the error, so that systemd restarts it later. It used
 * to keep its listener open and hang in "activating" until systemd's start timeout.
 */
describe('omflow booster with an unreachable database', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child?.exitCode === null) child.kill('SIGKILL');
  });

  it('exits 1 with COMMON_ERR_DB_CONNECTION instead of hanging', async () => {
    const dead = await freePort();
    const env = {
      PATH: process.env.PATH,
      OMFLOW_DB_URL: `postgres://omflow:x@127.0.0.1:${dead}/omflow`,
      OMFLOW_DB_CONNECT_TIMEOUT_MS: '2000',
      OMFLOW_CLUSTER_SECRET: 'start-test-secret-0123456789',
      OMFLOW_BOOSTER_HOST: '127.0.0.1',
      OMFLOW_BOOSTER_PORT: String(await freePort()),
      OMFLOW_BOOSTER_WORKERS: '2',
      OMFLOW_LOG_LEVEL: 'warn',
    };
    const c = spawn(process.execPath, [OMFLOW_BIN, 'booster'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    let stderr = '';
    c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => c.once('exit', (n) => resolve(n)));
    expect(stderr).toContain('COMMON_ERR_DB_CONNECTION');
    expect(code).toBe(1);
  }, 90_000);
});
