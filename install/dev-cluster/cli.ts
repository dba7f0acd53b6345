import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CliContext, parseFlags } from '../../common/cli/context.js';
import { createDatabase } from '../../common/db/create-database.js';
import { migrateLatest } from '../../common/db/migrate.js';
import { parseDatabaseUrl } from '../../common/db/url.js';
import { freePort, portFree } from '../../common/free-port.js';
import { groupAlive } from '../../common/process-group.js';
import { probePair } from './cluster-probe.js';
import { type EmbeddedDb, startEmbeddedDb } from './embedded-db.js';
import { type ManagedProcess, processesUnder, spawnGroup, stopGroup, stopProcessesUnder, tailOf } from './process-group.js';

/** The repository (or package) root: install/dev-cluster/ → ../../ */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const OMFLOW_BIN = join(ROOT, 'common', 'bin', 'omflow.mjs');

const USAGE = `Usage: omflow dev [options]   (npm start)

Runs the whole cluster on this machine: an embedded PostgreSQL, migrations, an active
Booster and a standby, and N app servers each started by its own agent.

Options:
  --servers N            app servers (each with its agent), default 3
  --port P               port of the active Booster (the standby takes P+1), default 5169
  --admin-password PW    password of the admin user (default: generated once, kept in the state dir)
  --db URL               use this database instead of the embedded PostgreSQL
  --fresh                throw away the embedded database and the nodes' state first
  --tls                  serve HTTPS and HTTP/2 with a throwaway self-signed certificate (needs openssl)
  --dir DIR              state directory, default <repo>/.omflow/dev
  --timeout SECONDS      how long to wait for "ready", default 180
  --help                 this help
`;

interface Options {
  servers: number;
  port: number;
  adminPassword?: string;
  db?: string;
  fresh: boolean;
  tls: boolean;
  dir: string;
  timeoutMs: number;
}

class Stopped extends Error {}

function parseOptions(argv: string[]): Options | string {
  const { flags, positionals } = parseFlags(argv, ['fresh', 'tls', 'help']);
  if (flags.help) return USAGE;
  if (positionals.length) return `omflow dev: unexpected argument "${positionals[0]}"\n\n${USAGE}`;
  const known = new Set(['servers', 'port', 'admin-password', 'db', 'fresh', 'tls', 'dir', 'timeout', 'help']);
  for (const k of Object.keys(flags)) if (!known.has(k)) return `omflow dev: unknown option --${k}\n\n${USAGE}`;
  const int = (name: string, dflt: number, min: number, max: number): number | string => {
    const v = flags[name];
    if (v === undefined) return dflt;
    const n = Number(v);
    return Number.isInteger(n) && n >= min && n <= max ? n : `omflow dev: --${name} must be an integer from ${min} to ${max}`;
  };
  const servers = int('servers', 3, 1, 32);
  const port = int('port', 5169, 1, 65534);
  const timeout = int('timeout', 180, 5, 3600);
  for (const v of [servers, port, timeout]) if (typeof v === 'string') return v;
  const str = (name: string): string | undefined => (typeof flags[name] === 'string' ? (flags[name] as string) : undefined);
  if (flags.db === true || flags['admin-password'] === true || flags.dir === true) return `omflow dev: an option is missing its value\n\n${USAGE}`;
  const db = str('db');
  if (db) {
    const parsed = parseDatabaseUrl(db);
    if (!parsed.ok) return `omflow dev: --db ${parsed.message}`;
  }
  return {
    servers: servers as number,
    port: port as number,
    timeoutMs: (timeout as number) * 1000,
    adminPassword: str('admin-password'),
    db,
    fresh: flags.fresh === true,
    tls: flags.tls === true,
    dir: resolve(str('dir') ?? join(ROOT, '.omflow', 'dev')),
  };
}

/** A fresh self-signed certificate for localhost and 127.0.0.1, valid for 30 days (dev only). */
function makeDevCertificate(dir: string): Promise<{ certFile: string; keyFile: string }> {
  mkdirSync(dir, { recursive: true });
  const certFile = join(dir, 'dev-cert.pem');
  const keyFile = join(dir, 'dev-key.pem');
  const args = [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '30',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ];
  return new Promise((resolve, reject) =>
    execFile('openssl', args, { timeout: 30_000 }, (err, _out, stderr) =>
      err
        ? reject(
            new Error(
              `--tls needs openssl to make a self-signed certificate: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'openssl not found' : stderr.trim()}`,
            ),
          )
        : resolve({ certFile, keyFile }),
    ),
  );
}

/** Process groups a previous `omflow dev` left behind (it was SIGKILLed): stop them before reusing ports. */
async function stopLeftovers(pidFile: string, say: (m: string) => void): Promise<void> {
  if (!existsSync(pidFile)) return;
  let pids: number[] = [];
  try {
    pids = JSON.parse(readFileSync(pidFile, 'utf8')) as number[];
  } catch {
    // Unreadable: nothing to do.
  }
  for (const pid of pids) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    // Only our own processes: the pid may have been reused by something else.
    if (groupAlive(pid) && /omflow\.mjs|postgres/.test(cmd)) {
      say(`stopping process group ${pid} left over by a previous run`);
      await stopGroup(pid, 5000);
    }
  }
  rmSync(pidFile, { force: true });
}

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const opts = parseOptions(argv);
  if (typeof opts === 'string') {
    (opts === USAGE ? ctx.stdout : ctx.stderr).write(opts.endsWith('\n') ? opts : `${opts}\n`);
    return opts === USAGE ? 0 : 2;
  }
  const say = (msg: string) => ctx.stdout.write(`[omflow dev] ${msg}\n`);
  let stopped = false;
  let stopResolve: () => void = () => {};
  const stopPromise = new Promise<void>((r) => (stopResolve = r));
  void ctx.stopSignal.then((sig) => {
    stopped = true;
    say(`${sig} received: stopping`);
    stopResolve();
  });
  const checkStop = () => {
    if (stopped) throw new Stopped();
  };
  const sleep = (ms: number) => Promise.race([new Promise((r) => setTimeout(r, ms)), stopPromise]);

  const logDir = join(opts.dir, 'logs');
  const nodesDir = join(opts.dir, 'nodes');
  const pidFile = join(opts.dir, 'pids.json');
  if (opts.fresh) rmSync(nodesDir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  mkdirSync(nodesDir, { recursive: true });
  await stopLeftovers(pidFile, say);

  let db: EmbeddedDb | undefined;
  const boosters: ManagedProcess[] = [];
  const agents: ManagedProcess[] = [];
  const recordPids = () => writeFileSync(pidFile, JSON.stringify([...agents, ...boosters, ...(db ? [db.process] : [])].map((p) => p.pid)));

  const shutdown = async (): Promise<boolean> => {
    let clean = true;
    // Agents first (each stops its app server), then the boosters, then the database they used.
    if (agents.length) say(`stopping ${agents.length} agent(s)`);
    clean = (await Promise.all(agents.map((a) => stopGroup(a.pid, 15_000)))).every(Boolean) && clean;
    if (boosters.length) say('stopping the boosters');
    // The standby first, so the active is not replaced during shutdown.
    for (const b of [...boosters].reverse()) clean = (await stopGroup(b.pid, 10_000)) && clean;
    if (db) {
      say('stopping PostgreSQL');
      clean = (await db.stop()) && clean;
    }
    // Checked, not assumed: an app server whose agent was killed before it finished stopping it
    // lives in a group of its own (it stops itself through the lifeline, but may still be at it).
    const strays = await stopProcessesUnder(opts.dir, 15_000);
    if (strays.length)
      say(`stopped ${strays.length} process(es) still running from ${opts.dir}: ${strays.map((p) => `${p.pid} (${p.cmd.slice(0, 120)})`).join('; ')}`);
    const left = [
      ...[...agents, ...boosters, ...(db ? [db.process] : [])].filter((p) => groupAlive(p.pid)).map((p) => `${p.name} (pgid ${p.pid})`),
      ...processesUnder(opts.dir).map((p) => `pid ${p.pid} (${p.cmd.slice(0, 120)})`),
    ];
    if (left.length) ctx.stderr.write(`[omflow dev] still running: ${left.join(', ')}\n`);
    else {
      rmSync(pidFile, { force: true });
      say('stopped; nothing left running');
    }
    return clean && left.length === 0;
  };

  const failStart = (p: ManagedProcess): never => {
    throw new Error(`${p.name} exited during start; last lines of ${relative(process.cwd(), p.logFile)}:\n${tailOf(p.logFile)}`);
  };

  try {
    const boosterPorts = [opts.port, opts.port + 1];
    for (const p of boosterPorts)
      if (!(await portFree(p))) throw new Error(`port ${p} on 127.0.0.1 is in use (another omflow dev?); choose others with --port`);

    // 1. Database.
    let dbUrl = opts.db;
    if (!dbUrl) {
      db = await startEmbeddedDb({
        dir: join(opts.dir, 'pg'),
        port: await freePort(),
        fresh: opts.fresh,
        logFile: join(logDir, 'postgres.log'),
        onProgress: say,
      });
      recordPids();
      dbUrl = db.url;
    }
    checkStop();
    say('migrating the database');
    {
      const parsed = parseDatabaseUrl(dbUrl);
      if (!parsed.ok) throw new Error(parsed.message);
      const database = createDatabase({
        url: dbUrl,
        client: parsed.value.client,
        host: '127.0.0.1',
        port: undefined,
        name: 'omflow',
        user: 'omflow',
        password: undefined,
        ssl: false,
        poolMin: 0,
        poolMax: 2,
        connectTimeoutMs: 10_000,
      });
      try {
        const applied = await migrateLatest(database.knex);
        say(applied.length ? `applied ${applied.length} migration(s)` : 'schema up to date');
      } finally {
        await database.destroy();
      }
    }
    checkStop();

    // 2. Session secret and admin login.
    const secret = randomBytes(24).toString('hex');
    // The control plane wants credentials: `omflow status` reads the session secret from here.
    const secretFile = join(opts.dir, 'cluster-secret');
    writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
    const pwFile = join(opts.dir, 'admin-password');
    let adminPassword = opts.adminPassword;
    if (!adminPassword && existsSync(pwFile) && !opts.fresh) adminPassword = readFileSync(pwFile, 'utf8').trim();
    if (!adminPassword) adminPassword = randomBytes(9).toString('base64url');
    writeFileSync(pwFile, `${adminPassword}\n`, { mode: 0o600 });

    const baseEnv: Record<string, string | undefined> = {
      ...ctx.env,
      OMFLOW_CONFIG: undefined,
      OMFLOW_DB_URL: dbUrl,
      OMFLOW_CLUSTER_SECRET: secret,
      OMFLOW_LOG_LEVEL: ctx.env.OMFLOW_LOG_LEVEL ?? 'info',
      BOOSTER_IP: '127.0.0.1',
      BOOSTER_PORT: String(boosterPorts[0]),
      SECOND_BOOSTER_IP: '127.0.0.1',
      SECOND_BOOSTER_PORT: String(boosterPorts[1]),
    };
    const node = process.execPath;

    say('seeding the admin user and the demo form');
    const out = await new Promise<{ code: number; text: string }>((resolve) => {
      execFile(
        node,
        [OMFLOW_BIN, 'server', 'seed', '--admin-user', 'admin', '--admin-password', adminPassword, '--demo'],
        { cwd: ROOT, env: baseEnv as NodeJS.ProcessEnv, timeout: 120_000 },
        (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, text: `${stdout}${stderr}` }),
      );
    });
    if (out.code !== 0) throw new Error(`omflow server seed failed (exit ${out.code}):\n${out.text}`);
    checkStop();

    // 3. Boosters: the first becomes active (it starts alone), the second its standby.
    // With --tls users get https://; the cluster keeps plain HTTP to /_booster/ on the same port.
    const boosterUrls = boosterPorts.map((p) => `http://127.0.0.1:${p}`);
    const tls = opts.tls ? await makeDevCertificate(join(opts.dir, 'tls')) : null;
    if (tls) say(`made a throwaway self-signed certificate ${tls.certFile} (browsers will warn once)`);
    const userUrls = boosterPorts.map((p) => `${tls ? 'https' : 'http'}://127.0.0.1:${p}`);
    for (const [i, port] of boosterPorts.entries()) {
      const id = `booster-${i + 1}`;
      say(`starting ${id} on ${boosterUrls[i]}`);
      const dataDir = join(nodesDir, id);
      mkdirSync(dataDir, { recursive: true });
      const p = spawnGroup(id, node, [OMFLOW_BIN, 'booster'], {
        cwd: ROOT,
        lifeline: true,
        logFile: join(logDir, `${id}.log`),
        env: {
          ...baseEnv,
          OMFLOW_NODE_ID: id,
          OMFLOW_DATA_DIR: dataDir,
          OMFLOW_BOOSTER_HOST: '127.0.0.1',
          OMFLOW_BOOSTER_PORT: String(port),
          OMFLOW_BOOSTER_ADVERTISE_URL: boosterUrls[i],
          OMFLOW_BOOSTER_PEER_URL: boosterUrls[1 - i],
          ...(tls ? { OMFLOW_BOOSTER_TLS_CERT_FILE: tls.certFile, OMFLOW_BOOSTER_TLS_KEY_FILE: tls.keyFile } : {}),
        },
      });
      boosters.push(p);
      recordPids();
      if (i === 0) {
        // Wait for the first to lead, so "5169 is the active" holds on every start.
        for (let n = 0; ; n++) {
          checkStop();
          if (p.hasExited()) failStart(p);
          const view = await probePair([boosterUrls[0]], secret);
          if (view.roles[boosterUrls[0]] === 'active') break;
          if (n * 100 > opts.timeoutMs) throw new Error(`${id} did not become active in time:\n${tailOf(p.logFile)}`);
          await sleep(100);
        }
      }
    }

    // 4. Agents, each starting its own app server.
    for (let i = 1; i <= opts.servers; i++) {
      checkStop();
      const id = `server-${i}`;
      const dataDir = join(nodesDir, id);
      mkdirSync(dataDir, { recursive: true });
      const [agentPort, serverPort] = [await freePort(), await freePort()];
      say(`starting agent ${id} (agent 127.0.0.1:${agentPort}, app server 127.0.0.1:${serverPort})`);
      agents.push(
        spawnGroup(id, node, [OMFLOW_BIN, 'agent'], {
          cwd: ROOT,
          lifeline: true,
          logFile: join(logDir, `${id}.log`),
          env: {
            ...baseEnv,
            OMFLOW_NODE_ID: id,
            OMFLOW_DATA_DIR: dataDir,
            OMFLOW_AGENT_HOST: '127.0.0.1',
            OMFLOW_AGENT_PORT: String(agentPort),
            OMFLOW_AGENT_URL: `http://127.0.0.1:${agentPort}`,
            OMFLOW_SERVER_HOST: '127.0.0.1',
            OMFLOW_SERVER_PORT: String(serverPort),
            OMFLOW_SERVER_URL: `http://127.0.0.1:${serverPort}`,
          },
        }),
      );
      recordPids();
    }

    // 5. Ready when both boosters answer (one active) and every server is up.
    const want = agents.length;
    let last = '';
    const deadline = Date.now() + opts.timeoutMs;
    for (;;) {
      checkStop();
      for (const p of [...boosters, ...agents]) if (p.hasExited()) failStart(p);
      const view = await probePair(boosterUrls, secret);
      const roles = Object.values(view.roles);
      const active = roles.filter((r) => r === 'active').length;
      const line = `boosters: ${roles.join('/')}; servers up: ${view.serversUp.length}/${want}`;
      if (line !== last) say(line);
      last = line;
      if (active === 1 && !roles.includes('down') && view.serversUp.length >= want) break;
      if (Date.now() > deadline) throw new Error(`not ready after ${opts.timeoutMs / 1000} s (${line}); logs in ${logDir}`);
      await sleep(250);
    }

    const url = `${userUrls[0]}/`;
    ctx.stdout.write(
      `${[
        '',
        '  OMFLOW Booster dev cluster is ready',
        '',
        `  URL:       ${url}`,
        `  Admin:     admin / ${adminPassword}   (dashboard: ${url}admin/cluster)`,
        `  Boosters:  ${userUrls[0]} (active), ${userUrls[1]} (standby)`,
        ...(tls ? [`  TLS:       self-signed ${tls.certFile} (curl --cacert ${tls.certFile}; HTTP/2 and HTTP/1.1)`] : []),
        `  Servers:   ${agents.length} app server(s), each with its agent`,
        `  Database:  ${db ? `embedded PostgreSQL, ${dbUrl.replace(/:[^:@/]*@/, ':***@')}` : dbUrl.replace(/:[^:@/]*@/, ':***@')}`,
        `  Logs:      ${logDir}`,
        `  Status:    OMFLOW_CLUSTER_SECRET_FILE=${secretFile} omflow status --booster ${boosterUrls[0]}`,
        '',
        `  Stop with Ctrl-C (or kill -TERM ${process.pid}).`,
        '',
      ].join('\n')}\n`,
    );

    // 6. Run until asked to stop; report children that die meanwhile.
    for (const p of [...boosters, ...agents])
      void p.exited.then(({ code, signal }) => {
        if (!stopped) ctx.stderr.write(`[omflow dev] ${p.name} exited (${signal ?? `code ${code}`}); see ${p.logFile}\n`);
      });
    await stopPromise;
    return (await shutdown()) ? 0 : 1;
  } catch (err) {
    if (!(err instanceof Stopped)) ctx.stderr.write(`[omflow dev] ${(err as Error).message}\n`);
    const clean = await shutdown();
    return err instanceof Stopped && clean ? 0 : 1;
  }
}
