import type { ChildProcess } from 'node:child_process';
import type { Knex } from 'knex';
import { createLab, LAB_SUBNET, type Lab, unixSocketDbUrl } from './netns.js';
import { OMFLOW_BIN, REPO_ROOT } from './processes.js';

/**
 * Two boosters owning a VIP, one real app server and a ticket-raising client, each in its own
 * network namespace on a private bridge (test/helpers/netns.ts). The boosters, the server and
 * the client reach the shared PostgreSQL through its unix socket. Used by test/booster/leadership/vip-owner.test.ts
 * and bench/booster-vip-failover.ts.
 */
export const VIP = `${LAB_SUBNET}.10`;
export const BOOSTERS = ['a', 'b'] as const;
export const LOGIN = { user: 'admin', password: 'admin-pass-1' };

export interface Proc {
  child: ChildProcess;
  output(): string;
  exited: Promise<void>;
}

export interface ClientOutcome {
  /** `took`: how long the acknowledged attempt lasted. */
  acks: { at: number; key: string; took?: number }[];
  failed: number;
  retried: number;
  /** Why attempts failed: the status and body start, or the network error code. */
  failures: { at: number; why: string }[];
}

export interface VipCluster {
  lab: Lab;
  boosters: (Proc | null)[];
  startBooster(i: number): Proc;
  /** Index of the lease holder, per the database (-1: none live). */
  activeIndex(): Promise<number>;
  /**
   * kill -9 of booster i. `stopPost`: then do what the VIP drop-in's ExecStopPost does on a real
   * host (docs/operator-guide.md): remove the address the dead process could not remove. Without
   * it the address stays in the namespace, answering with RSTs, until the booster restarts.
   */
  kill9(i: number, opts?: { stopPost?: boolean }): Promise<void>;
  startClient(): Promise<{ proc: Proc; outcome: ClientOutcome; stop(): Promise<void> }>;
  destroy(): Promise<void>;
}

function track(child: ChildProcess, onLine?: (line: string) => void): Proc {
  let out = '';
  let partial = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 400_000) out = out.slice(-200_000);
  };
  child.stderr!.on('data', keep);
  child.stdout!.on('data', (d: Buffer) => {
    keep(d);
    if (!onLine) return;
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) onLine(l);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return { child, output: () => out, exited };
}

export async function waitUntil<T>(fn: () => Promise<T> | T, what: string, timeoutMs = 30_000, everyMs = 20): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await Promise.resolve(fn()).catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `dbUrl`: TCP URL of a migrated, seeded database (admin user + demo form); `knex` reads the lease. */
export async function startVipCluster(opts: { dbUrl: string; knex: Knex; secret: string; boosterEnv?: Record<string, string> }): Promise<VipCluster> {
  const socketUrl = unixSocketDbUrl(opts.dbUrl);
  const lab = createLab(['a', 'b', 'srv', 'cli']);
  const base = { PATH: process.env.PATH, HOME: process.env.HOME, OMFLOW_DB_URL: socketUrl, OMFLOW_CLUSTER_SECRET: opts.secret, OMFLOW_DATA_DIR: '/tmp' };
  const urlOf = (n: string) => `http://${lab.nodes[n]!.ip}:5169`;
  const boosters: (Proc | null)[] = [null, null];
  const all: Proc[] = [];

  const cluster: VipCluster = {
    lab,
    boosters,
    startBooster(i) {
      const me = BOOSTERS[i]!;
      // As the systemd unit with the VIP drop-in runs it: an unprivileged user, no new privileges,
      // CAP_NET_ADMIN (ip addr) and CAP_NET_RAW (arping) and nothing else. setpriv execs: same pid.
      const caps = '-all,+net_admin,+net_raw';
      const child = lab.spawnIn(
        me,
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          '--no-new-privs',
          `--inh-caps=${caps}`,
          `--ambient-caps=${caps}`,
          `--bounding-set=${caps}`,
          process.execPath,
          OMFLOW_BIN,
          'booster',
        ],
        {
          ...base,
          HOME: '/tmp',
          OMFLOW_NODE_ID: `vip-${me}`,
          OMFLOW_LOG_LEVEL: 'info',
          OMFLOW_BOOSTER_HOST: '0.0.0.0',
          OMFLOW_BOOSTER_PORT: '5169',
          OMFLOW_BOOSTER_ADVERTISE_URL: urlOf(me),
          OMFLOW_BOOSTER_PEER_URL: urlOf(BOOSTERS[1 - i]!),
          OMFLOW_BOOSTER_SLOW_START_MS: '0',
          OMFLOW_BOOSTER_VIP: `${VIP}/24`,
          OMFLOW_BOOSTER_VIP_INTERFACE: 'eth0',
          ...opts.boosterEnv,
        },
      );
      const p = track(child);
      boosters[i] = p;
      all.push(p);
      return p;
    },
    async activeIndex() {
      const row = await opts.knex('booster_lease').where('name', 'leader').first();
      if (!row) return -1;
      const live = await opts.knex.raw('SELECT (expires_at > now()) AS live FROM booster_lease WHERE name = ?', ['leader']);
      if (!live.rows[0]?.live) return -1;
      return BOOSTERS.findIndex((b) => `vip-${b}` === row.holder);
    },
    async kill9(i, killOpts) {
      const p = boosters[i]!;
      process.kill(p.child.pid!, 'SIGKILL'); // `ip netns exec` exec'd node: this pid is the booster itself
      await p.exited;
      boosters[i] = null;
      if (killOpts?.stopPost) {
        try {
          lab.ipIn(BOOSTERS[i]!, ['-4', 'addr', 'del', `${VIP}/24`, 'dev', 'eth0']);
        } catch {
          // not there (the booster was not carrying it): ExecStopPost's leading '-' ignores this too
        }
      }
    },
    async startClient() {
      const outcome: ClientOutcome = { acks: [], failed: 0, retried: 0, failures: [] };
      let ready = false;
      const child = lab.spawnIn('cli', process.execPath, ['--import', 'tsx', `${REPO_ROOT}test/helpers/vip-client.ts`], {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        TARGET: `http://${VIP}:5169`,
        LOGIN_USER: LOGIN.user,
        LOGIN_PASSWORD: LOGIN.password,
      });
      const p = track(child, (line) => {
        const [kind, at, key, took] = line.split(' ');
        if (kind === 'ack') outcome.acks.push({ at: Number(at), key: key!, took: Number(took) });
        else if (kind === 'failed') {
          outcome.failed++;
          outcome.failures.push({ at: Number(at), why: line.split(' ').slice(3).join(' ') });
        } else if (kind === 'retry') {
          outcome.retried++;
          outcome.failures.push({ at: Number(at), why: line.split(' ').slice(2).join(' ') });
        } else if (kind === 'ready') ready = true;
      });
      all.push(p);
      await waitUntil(() => ready || p.child.exitCode !== null, 'client logged in through the VIP', 60_000, 50).catch(() => {});
      if (!ready) throw new Error(`the client could not log in through the VIP:\n${all.map((q) => q.output().slice(-2000)).join('\n---\n')}`);
      return {
        proc: p,
        outcome,
        async stop() {
          p.child.kill('SIGTERM');
          await p.exited;
        },
      };
    },
    async destroy() {
      await lab.destroy();
    },
  };

  try {
    const srv = lab.spawnIn('srv', process.execPath, [OMFLOW_BIN, 'server'], {
      ...base,
      OMFLOW_NODE_ID: 'vip-srv',
      OMFLOW_LOG_LEVEL: 'warn',
      OMFLOW_SERVER_HOST: lab.nodes.srv!.ip,
      OMFLOW_SERVER_PORT: '8000',
      BOOSTER_IP: lab.nodes.a!.ip,
      BOOSTER_PORT: '5169',
      SECOND_BOOSTER_IP: lab.nodes.b!.ip,
      SECOND_BOOSTER_PORT: '5169',
      OMFLOW_SERVER_HEARTBEAT_MS: '200',
    });
    const srvProc = track(srv);
    all.push(srvProc);
    await waitUntil(
      () => (srv.exitCode !== null ? Promise.reject(new Error(srvProc.output())) : /listening on/.test(srvProc.output())),
      'app server listening',
      60_000,
      50,
    );
    cluster.startBooster(0);
    await waitUntil(async () => (await cluster.activeIndex()) === 0, 'booster a active', 60_000, 50);
    cluster.startBooster(1);
    await waitUntil(() => /booster listening/.test(boosters[1]!.output()), 'booster b standby', 60_000, 50);
  } catch (err) {
    const logs = all.map((p) => p.output().slice(-3000)).join('\n---\n');
    await lab.destroy();
    throw new Error(`${(err as Error).message}\n${logs}`);
  }
  return cluster;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/**
 * The client-visible gap of a failover: the longest pause between consecutive acknowledgements
 * in [from, to] (answers already on the wire at the kill still arrive just after it).
 */
export function longestPause(acks: { at: number }[], from: number, to: number): number | null {
  const times = acks
    .map((a) => a.at)
    .filter((t) => t >= from && t <= to)
    .sort((a, b) => a - b);
  if (times.length < 2) return null;
  let worst = 0;
  for (let i = 1; i < times.length; i++) worst = Math.max(worst, times[i]! - times[i - 1]!);
  return worst;
}
