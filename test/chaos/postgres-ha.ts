import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { type EmbeddedDb, postgresOwner, startEmbeddedDb, startPostgresProcess, waitForPostgres } from '../../install/dev-cluster/embedded-db.js';
import type { ManagedProcess } from '../../install/dev-cluster/process-group.js';
import { freePort } from '../helpers/processes.js';

/**
 * A PostgreSQL of the chaos suite's own (Debian's binaries, the newest /usr/lib/postgresql/<major>
 * or OMFLOW_TEST_PG_BIN; not the suite's shared embedded one, which must never stall): a primary and, when asked, a synchronous streaming replica made with
 * `pg_basebackup -R`, so a commit is acknowledged only once the replica has flushed it. The
 * test plays the failover manager (Patroni/repmgr in production): it kills the primary and runs
 * `pg_ctl promote` on the replica. Started with the dev cluster's starter (embedded-db.ts), so
 * as root the server runs as the `postgres` user from a 0755 temporary directory.
 */
export const PG_BIN = process.env.OMFLOW_TEST_PG_BIN ?? debianPostgresBin();

/** The newest Debian PostgreSQL server install (/usr/lib/postgresql/<major>/bin), 15 when none. */
function debianPostgresBin(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'pg_basebackup')))
        .map(Number)
        .sort((a, b) => b - a)
    : [];
  return join(root, String(majors[0] ?? 15), 'bin');
}

const run = promisify(execFile);

/** Why the chaos suite cannot run its own PostgreSQL here, or null. */
export function postgresBinariesMissing(): string | null {
  const missing = ['initdb', 'postgres', 'pg_ctl', 'pg_basebackup', 'pg_dump', 'pg_restore'].filter((b) => !existsSync(join(PG_BIN, b)));
  return missing.length
    ? `PostgreSQL server binaries missing in ${PG_BIN}: ${missing.join(', ')} (Debian: apt-get install postgresql, or set OMFLOW_TEST_PG_BIN)`
    : null;
}

/** Settings of both servers. fsync off: kill -9 of postgres leaves the OS page cache intact, only a host crash would need it. */
const SETTINGS = { listen_addresses: '127.0.0.1', unix_socket_directories: '', fsync: 'off', full_page_writes: 'off', max_connections: '200' };

interface Node {
  port: number;
  dataDir: string;
  logFile: string;
  proc: ManagedProcess;
  settings: Record<string, string>;
}

export interface Outage {
  /** When the database stopped answering (ms epoch). */
  downAt: number;
  /** When it answered again (writable), ms epoch. */
  backAt: number;
}

export interface PostgresHa {
  /** postgres://… of the `omflow` database on the current primary (one host). */
  primaryUrl(): string;
  /** Both hosts, libpq style: `postgres://u:p@h1:p1,h2:p2/omflow?target_session_attrs=read-write`. */
  multiHostUrl: string;
  hasReplica: boolean;
  /** The replica's `pg_stat_replication.sync_state` as the primary sees it ('sync' when commits wait for it). */
  replicaSyncState(): Promise<string | null>;
  /** SIGSTOP of the postmaster and every backend for `ms`, then SIGCONT. */
  stall(ms: number): Promise<Outage>;
  /** `pg_ctl stop -m fast` equivalent (SIGINT), then a start on the same port and data. */
  restart(): Promise<Outage>;
  /** kill -9 of the primary's whole process group, `promoteAfterMs` later `pg_ctl promote` of the replica. */
  killPrimaryAndPromote(promoteAfterMs: number): Promise<Outage>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Direct children of a pid (the postmaster's backends and auxiliary processes). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid …: comm may hold spaces, so split after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

function signal(pids: number[], sig: NodeJS.Signals): void {
  for (const p of pids) {
    try {
      process.kill(p, sig);
    } catch {
      // Already gone.
    }
  }
}

/**
 * The moment "the database is back" as a writer sees it: a fresh connection commits a transaction
 * with a transaction id (with a synchronous replica, that commit also waits for the replica).
 */
async function waitWritable(url: string, timeoutMs = 30_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
    c.on('error', () => {});
    const attempt = (async () => {
      await c.connect();
      await c.query('SELECT txid_current()');
      return true;
    })().catch(() => false);
    const ok = await Promise.race([attempt, sleep(1000).then(() => false)]);
    await c.end().catch(() => {});
    if (ok) return Date.now();
    if (Date.now() > end) throw new Error(`PostgreSQL at ${new URL(url).host} not writable within ${timeoutMs} ms`);
    await sleep(25);
  }
}

export async function startPostgresHa(opts: { replica: boolean }): Promise<PostgresHa> {
  const dir = mkdtempSync(join(tmpdir(), 'omflow-chaos-pg-'));
  const owner = postgresOwner();
  const primaryPort = await freePort();
  const primarySettings = SETTINGS;
  let db: EmbeddedDb;
  try {
    db = await startEmbeddedDb({
      dir,
      port: primaryPort,
      fresh: true,
      logFile: join(dir, 'primary.log'),
      onProgress: () => {},
      binDir: PG_BIN,
      settings: primarySettings,
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const password = new URL(db.adminUrl).password;
  const urlOn = (port: number) => `postgres://postgres:${password}@127.0.0.1:${port}/omflow`;
  const primary: Node = { port: primaryPort, dataDir: db.dataDir, logFile: join(dir, 'primary.log'), proc: db.process, settings: primarySettings };
  let replica: Node | null = null;
  let current = primary;
  const asPostgres = (bin: string, args: string[]) =>
    owner
      ? run('setpriv', [`--reuid=${owner.uid}`, `--regid=${owner.gid}`, '--clear-groups', join(PG_BIN, bin), ...args], { cwd: dir })
      : run(join(PG_BIN, bin), args, { cwd: dir });

  const stopNode = async (n: Node) => {
    if (n.proc.hasExited()) return;
    signal([n.proc.pid], 'SIGINT'); // fast shutdown
    await Promise.race([n.proc.exited, sleep(15_000)]);
    try {
      process.kill(-n.proc.pid, 'SIGKILL');
    } catch {
      // Group gone.
    }
  };

  if (opts.replica) {
    const replicaPort = await freePort();
    const parent = join(dir, 'replica');
    mkdirSync(parent, { mode: 0o700 });
    if (owner) chownSync(parent, owner.uid, owner.gid);
    const dataDir = join(parent, 'data');
    await asPostgres('pg_basebackup', [
      '-D',
      dataDir,
      '-R',
      '-X',
      'stream',
      '--checkpoint=fast',
      '-d',
      `postgres://postgres:${password}@127.0.0.1:${primaryPort}/postgres`,
    ]);
    const logFile = join(dir, 'replica.log');
    // The replica retries its primary every 200 ms (default 5 s): with synchronous commit, the
    // primary's commits wait for it after every primary restart.
    const replicaSettings = { ...SETTINGS, wal_retrieve_retry_interval: '200ms' };
    const proc = startPostgresProcess(join(PG_BIN, 'postgres'), dataDir, replicaPort, replicaSettings, logFile, owner);
    replica = { port: replicaPort, dataDir, logFile, proc, settings: replicaSettings };
    await waitForPostgres(`postgres://postgres:${password}@127.0.0.1:${replicaPort}/postgres`, proc);
    // Synchronous only now that the replica streams (a commit before would wait for it forever), and
    // in the primary's postgresql.auto.conf, so the promoted replica does not inherit it.
    const c = new pg.Client({ connectionString: db.adminUrl });
    await c.connect();
    try {
      await c.query(`ALTER SYSTEM SET synchronous_standby_names = '*'`);
      await c.query('SELECT pg_reload_conf()');
      // The reload is asynchronous: commits wait for the replica once it is listed as sync.
      for (let i = 0; ; i++) {
        const r = await c.query<{ sync_state: string }>('SELECT sync_state FROM pg_stat_replication');
        if (r.rows[0]?.sync_state === 'sync') break;
        if (i >= 200) throw new Error(`replica not synchronous after 10 s: ${JSON.stringify(r.rows)}`);
        await sleep(50);
      }
    } finally {
      await c.end();
    }
  }

  const ha: PostgresHa = {
    primaryUrl: () => urlOn(current.port),
    multiHostUrl: `postgres://postgres:${password}@127.0.0.1:${primaryPort}${replica ? `,127.0.0.1:${replica.port}` : ''}/omflow?target_session_attrs=read-write`,
    hasReplica: replica !== null,
    async replicaSyncState() {
      const c = new pg.Client({ connectionString: urlOn(current.port) });
      await c.connect();
      try {
        const r = await c.query<{ sync_state: string }>('SELECT sync_state FROM pg_stat_replication');
        return r.rows[0]?.sync_state ?? null;
      } finally {
        await c.end();
      }
    },
    async stall(ms) {
      const postmaster = current.proc.pid;
      // The postmaster first, so it forks no new backend while we stop the existing ones.
      signal([postmaster], 'SIGSTOP');
      const downAt = Date.now();
      const backends = childrenOf(postmaster);
      signal(backends, 'SIGSTOP');
      await sleep(ms);
      signal(backends, 'SIGCONT');
      signal([postmaster], 'SIGCONT');
      return { downAt, backAt: Date.now() };
    },
    async restart() {
      const downAt = Date.now();
      await stopNode(current);
      current.proc = startPostgresProcess(join(PG_BIN, 'postgres'), current.dataDir, current.port, current.settings, current.logFile, owner);
      return { downAt, backAt: await waitWritable(urlOn(current.port)) };
    },
    async killPrimaryAndPromote(promoteAfterMs) {
      if (!replica) throw new Error('no replica to promote');
      try {
        process.kill(-primary.proc.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      const downAt = Date.now();
      await primary.proc.exited;
      await sleep(promoteAfterMs);
      await asPostgres('pg_ctl', ['promote', '-w', '-t', '30', '-D', replica.dataDir]);
      current = replica;
      return { downAt, backAt: await waitWritable(urlOn(replica.port)) };
    },
    async stop() {
      for (const n of [replica, primary]) if (n) await stopNode(n);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return ha;
}
