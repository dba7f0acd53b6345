import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';
import { type ManagedProcess, spawnGroup, tailOf } from '../../install/dev-cluster/process-group.js';
import { freePort } from '../helpers/processes.js';
import type { Outage } from './postgres-ha.js';

/**
 * A MariaDB of the chaos suite's own, started like `.ci/run` starts the suite's shared one (its own
 * data directory, loopback port, `--user=mysql` as root), because restarting the shared server would
 * break every other MariaDB test of the run.
 */
const MARIADBD = ['/usr/sbin/mariadbd', '/usr/bin/mariadbd'].find((p) => existsSync(p));
const INSTALL_DB = ['/usr/bin/mariadb-install-db', '/usr/sbin/mariadb-install-db'].find((p) => existsSync(p));

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Why the chaos suite cannot run its own MariaDB here, or null. */
export function mariadbMissing(): string | null {
  if (!MARIADBD || !INSTALL_DB) return 'mariadbd / mariadb-install-db not installed (Debian: apt-get install mariadb-server)';
  return null;
}

export interface MariaDbServer {
  /** mysql://… of the `omflow` database. */
  url: string;
  /** Clean shutdown (SIGTERM, as `systemctl restart mariadb`), then a start on the same port and data. */
  restart(): Promise<Outage>;
  stop(): Promise<void>;
}

const PASSWORD = 'omflow-chaos';

export async function startMariaDb(): Promise<MariaDbServer> {
  const why = mariadbMissing();
  if (why) throw new Error(why);
  const dir = mkdtempSync(join(tmpdir(), 'omflow-chaos-mariadb-'));
  const root = process.getuid?.() === 0;
  const port = await freePort();
  const socket = join(dir, 'mysqld.sock');
  const logFile = join(dir, 'mysqld.log');
  if (root) {
    const id = (flag: string) => run('id', [flag, 'mysql']).then((r) => Number(r.stdout.trim()));
    chownSync(dir, await id('-u'), await id('-g'));
  }
  const userArgs = root ? ['--user=mysql'] : [];
  await run(INSTALL_DB!, [...userArgs, `--datadir=${join(dir, 'data')}`, '--auth-root-authentication-method=normal', '--skip-test-db']);
  const args = [
    ...userArgs,
    `--datadir=${join(dir, 'data')}`,
    `--socket=${socket}`,
    `--port=${port}`,
    '--bind-address=127.0.0.1',
    `--pid-file=${join(dir, 'mysqld.pid')}`,
    '--skip-log-bin',
    '--innodb-flush-log-at-trx-commit=2',
    '--innodb-buffer-pool-size=64M',
    '--max-connections=300',
  ];
  let proc: ManagedProcess;
  const start = () => {
    proc = spawnGroup('mariadbd', MARIADBD!, args, { env: { ...process.env }, cwd: dir, logFile });
  };
  const url = `mysql://omflow:${PASSWORD}@127.0.0.1:${port}/omflow`;
  /** A fresh TCP connection that commits: the server is back for a client. */
  const waitUp = async (how: { socketPath: string } | { uri: string }, timeoutMs = 60_000) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (proc.hasExited()) throw new Error(`mariadbd exited:\n${tailOf(logFile)}`);
      try {
        const c = 'uri' in how ? await mysql.createConnection({ uri: how.uri, connectTimeout: 1000 }) : await mysql.createConnection({ ...how, user: 'root' });
        await c.query('SELECT 1');
        await c.end();
        return Date.now();
      } catch {
        if (Date.now() > end) throw new Error(`mariadbd did not accept connections within ${timeoutMs} ms:\n${tailOf(logFile)}`);
        await sleep(25);
      }
    }
  };
  const stopServer = async () => {
    if (proc.hasExited()) return;
    process.kill(proc.pid, 'SIGTERM');
    await Promise.race([proc.exited, sleep(30_000)]);
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // Group gone.
    }
  };
  start();
  try {
    await waitUp({ socketPath: socket });
    const admin = await mysql.createConnection({ socketPath: socket, user: 'root' });
    await admin.query('CREATE DATABASE omflow CHARACTER SET utf8mb4 COLLATE utf8mb4_bin');
    await admin.query(`CREATE USER 'omflow'@'127.0.0.1' IDENTIFIED BY '${PASSWORD}'`);
    await admin.query(`GRANT ALL PRIVILEGES ON *.* TO 'omflow'@'127.0.0.1'`);
    await admin.end();
  } catch (err) {
    await stopServer();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    url,
    async restart() {
      const downAt = Date.now();
      await stopServer();
      start();
      return { downAt, backAt: await waitUp({ uri: url }) };
    },
    async stop() {
      await stopServer();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
