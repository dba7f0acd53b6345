/**
 * An OMFLOW cluster on lab hosts, installed and operated with the operator guide's own commands
 * (test/lab/guide.ts): a database host, two Booster hosts sharing a virtual IP, up to three
 * app-server hosts and a client host. Measurements are taken as a user would: tickets raised
 * from the client host through the VIP, then the database read for what was kept.
 */
import { type ChildProcess, spawnSync } from 'node:child_process';
import { copyFileSync, linkSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { arch } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import knexFactory, { type Knex } from 'knex';
import { probePair } from '../../install/dev-cluster/cluster-probe.js';
import type { Ack } from '../chaos/cluster.js';
import { type GuideVars, guideBlock } from './guide.js';
import { type Host, Lab } from './hosts.js';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** Where each lab's hosts live (overlay mounts: not a tmpfs), one directory per lab. */
export const LAB_PARENT = '/var/tmp';
export const LAB_PREFIX = 'omflow-lab-';

/** A fresh directory for one lab's hosts. */
export function labDir(): string {
  return mkdtempSync(join(LAB_PARENT, LAB_PREFIX));
}
export const ADMIN = { user: 'admin', password: 'Admin-pw-1' };
export const BOOSTER_PORT = 5169;
/** The guide's last octets (the lab uses them on its own /24). */
export const OCTET = { vip: 10, 'booster-1': 11, 'booster-2': 12, 'app-1': 21, 'app-2': 22, 'app-3': 23, db1: 31, db2: 32, client: 50 } as const;
/** Automatic steps of the demo flow for the load's tickets (amount 1000), then the form step. */
const AUTOMATIC_STEPS = ['triage', 'small'];
const FORM_STEP = 'approve';

export interface Release {
  /** Where the tarballs are on the lab machine. */
  dir: string;
  version: string;
  platform: string;
  booster: string;
  agent: string;
}

/** The packages `npm run package` wrote to `dir` (for this machine's architecture). */
export function releaseIn(dir: string): Release {
  const platform = `linux-${arch()}`;
  const sums = readFileSync(join(dir, 'SHA256SUMS'), 'utf8');
  const m = new RegExp(`Booster_(\\S+)_${platform}\\.tar\\.gz`).exec(sums);
  if (!m) throw new Error(`no Booster package for ${platform} in ${dir}`);
  return { dir, version: m[1]!, platform, booster: `Booster_${m[1]}_${platform}.tar.gz`, agent: `BoosterAgent_${m[1]}_${platform}.tar.gz` };
}

/** `npm run package` as a release manager runs it, into `out`; returns how long it took. */
export function buildRelease(out: string, extra: string[] = []): number {
  const t = Date.now();
  const r = spawnSync('npm', ['run', 'package', '--', '--out', out, '--arch', arch(), ...extra], { cwd: REPO, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`npm run package failed:\n${r.stdout}\n${r.stderr}`);
  return Date.now() - t;
}

/** An acknowledged ticket as the client saw it (the chaos suite's shape). */
export type { Ack };

export interface TicketLoad {
  acks: Ack[];
  errors: Array<{ key: string; why: string; at: number }>;
  firstFailures: Array<{ key: string; why: string; at: number }>;
  ready: Promise<void>;
  /** Ends the load (closes the client's stdin) and waits for its last tickets. */
  stop(): Promise<void>;
}

export interface Verdict {
  acked: number;
  /** Acknowledged, but no row with its key and number. */
  lost: number;
  /** Keys with more than one row. */
  duplicated: number;
  /** Tickets whose automatic steps did not each run exactly once. */
  stepsNotOnce: number;
}

/** Longest gap between consecutive acknowledgements from `from` on (ms), the client's view of an outage. */
export function longestGap(acks: Ack[], from: number): number {
  const times = acks
    .map((a) => a.at)
    .filter((t) => t >= from)
    .sort((a, b) => a - b);
  let worst = 0;
  let prev = from;
  for (const t of times) {
    worst = Math.max(worst, t - prev);
    prev = t;
  }
  return worst;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export type Database = 'postgresql' | 'mariadb' | 'patroni';

export interface ClusterOptions {
  rootfs: string;
  dir: string;
  /** The release installed first (later ones go through `share`). */
  release: Release;
  /** Debian's PostgreSQL on db1, MariaDB on db1, or PostgreSQL under Patroni on db1 and db2. */
  database?: Database;
  /** App-server hosts (1 to 3). */
  agents?: number;
  log?: (m: string) => void;
}

export class LabCluster {
  readonly lab: Lab;
  readonly db: Host;
  readonly db2: Host | null;
  readonly boosters: [Host, Host];
  readonly agents: Host[];
  readonly client: Host;
  readonly vars: GuideVars;
  readonly database: Database;
  secret = '';
  readonly share: string;
  #knex: Knex | null = null;
  readonly log: (m: string) => void;

  constructor(readonly opts: ClusterOptions) {
    this.log = opts.log ?? ((m) => process.stderr.write(`[lab] ${m}\n`));
    this.lab = new Lab(opts.rootfs, opts.dir);
    this.database = opts.database ?? 'postgresql';
    // Every host sees the lab's share (releases, patches) read-only, as files an operator copied over.
    this.share = join(opts.dir, 'share');
    mkdirSync(this.share, { recursive: true });
    const share = { from: this.share, to: '/lab/share' };
    const add = (name: keyof typeof OCTET, binds = [share]) => this.lab.add({ name, octet: OCTET[name], binds });
    this.db = add('db1');
    this.db2 = this.database === 'patroni' ? add('db2') : null;
    this.boosters = [add('booster-1'), add('booster-2')];
    this.agents = (['app-1', 'app-2', 'app-3'] as const).slice(0, opts.agents ?? 3).map((n) => add(n));
    // The client runs the lab's own scripts with this machine's Node.js (read-only).
    this.client = add('client', [share, { from: REPO, to: '/lab/repo' }, { from: realpathSync(process.execPath), to: '/usr/local/bin/node' }]);
    this.vars = {
      subnet: this.lab.subnet,
      iface: 'host0',
      version: opts.release.version,
      platform: opts.release.platform,
      dbUrl:
        this.database === 'mariadb'
          ? 'mysql://omflow:secret@db.example.internal:3306/omflow'
          : this.database === 'patroni'
            ? 'postgres://omflow:secret@db1:5432,db2:5432/omflow?target_session_attrs=read-write'
            : undefined,
    };
  }

  get hosts(): Host[] {
    return [...this.lab.hosts.values()];
  }

  get vip(): string {
    return `${this.lab.subnet}.${OCTET.vip}`;
  }

  get vipUrl(): string {
    return `http://${this.vip}:${BOOSTER_PORT}`;
  }

  boosterUrl(h: Host): string {
    return `http://${h.ip}:${BOOSTER_PORT}`;
  }

  async boot(): Promise<void> {
    this.lab.createNetwork();
    await Promise.all(this.hosts.map((h) => h.boot()));
  }

  /** A guide block on a host (bash -e, in /root), with the lab's addresses. */
  guide(
    host: Host,
    block: string,
    opts: { input?: string; timeoutMs?: number; vars?: Partial<GuideVars>; fill?: Record<string, string> } = {},
  ): Promise<string> {
    let script = guideBlock(block, { ...this.vars, ...opts.vars });
    // Placeholders the operator fills in (e.g. <entry>).
    for (const [k, v] of Object.entries(opts.fill ?? {})) script = script.replaceAll(k, v);
    return host.must(`set -eo pipefail\n${script}`, { input: opts.input, timeoutMs: opts.timeoutMs ?? 300_000 });
  }

  /** A file of the lab machine, visible to every host under /lab/share (hard-linked, read-only there). */
  shareFile(file: string): string {
    const name = basename(file);
    rmSync(join(this.share, name), { force: true });
    try {
      linkSync(file, join(this.share, name));
    } catch {
      copyFileSync(file, join(this.share, name));
    }
    return `/lab/share/${name}`;
  }

  /** What the operator copies to a host before installing: the package, and the cluster secret. */
  async copyTo(host: Host, release: Release = this.opts.release): Promise<void> {
    const pkg = this.shareFile(join(release.dir, this.boosters.includes(host) ? release.booster : release.agent));
    const secret = this.secret ? `umask 077 && printf '%s\\n' '${this.secret}' > /root/omflow-cluster-secret && ` : '';
    await host.must(`${secret}cp ${pkg} /root/`);
  }

  async setupDatabase(): Promise<void> {
    if (this.database !== 'patroni') {
      await this.guide(this.db, this.database === 'mariadb' ? 'database-mariadb' : 'database-postgresql');
      return;
    }
    const dbs = [this.db, this.db2!];
    await Promise.all([...dbs, this.boosters[0]].map((h) => this.guide(h, 'patroni-etcd')));
    await this.waitFor(
      'etcd healthy on three members',
      // -w json: etcdctl 3.4 (Debian 12) prints its plain health lines on stderr, not stdout.
      async () => {
        const r = await this.db.sh('etcdctl endpoint health --cluster -w json');
        return r.code === 0 && (JSON.parse(r.stdout) as Array<{ health: boolean }>).filter((m) => m.health).length === 3;
      },
    );
    await Promise.all(dbs.map((h) => this.guide(h, 'patroni-config')));
    await this.guide(this.db, 'patroni-start');
    await this.waitFor('db1 leading', async () => (await this.patroniMembers()).db1?.role === 'Leader');
    await this.guide(this.db2!, 'patroni-start');
    await this.waitFor('db2 a streaming synchronous standby', async () => /Sync Standby/.test((await this.patroniMembers()).db2?.role ?? ''), 180_000);
    await this.guide(this.db, 'patroni-database');
  }

  /** `patronictl list` as name → role and state (asked on whichever database host answers). */
  async patroniMembers(): Promise<Record<string, { role: string; state: string }>> {
    for (const h of [this.db, this.db2].filter((x): x is Host => x?.running === true)) {
      const r = await h.sh('patronictl -c /etc/patroni/15-main.yml list -f json');
      if (r.code !== 0) continue;
      const rows = JSON.parse(r.stdout) as Array<{ Member: string; Role: string; State: string }>;
      return Object.fromEntries(rows.map((m) => [m.Member, { role: m.Role, state: m.State }]));
    }
    return {};
  }

  /** The first Booster (generates the secret), then the HA Booster, as the guide installs them. */
  async installBoosters(): Promise<void> {
    const [b1, b2] = this.boosters;
    await this.copyTo(b1);
    await this.guide(b1, 'install-booster-first');
    this.secret = (await b1.must('cat /root/omflow-cluster-secret')).trim();
    await this.copyTo(b2);
    await this.guide(b2, 'install-booster-ha');
  }

  /** app-1 with the first admin, app-2 through the installer's dialogue (answers piped), app-3 unattended. */
  async installAgents(): Promise<void> {
    const [first, ...rest] = this.agents;
    await this.copyTo(first!);
    await this.guide(first!, 'install-agent-first');
    await Promise.all(
      rest.map(async (h, i) => {
        await this.copyTo(h);
        if (i === 0) await this.guide(h, 'install-agent-dialogue', { input: this.dialogueAnswers() });
        else await this.guide(h, 'install-agent');
      }),
    );
  }

  /** The answers an operator types into the agent installer's dialogue (Enter takes the default). */
  dialogueAnswers(): string {
    const s = this.lab.subnet;
    return [
      `${s}.${OCTET['booster-1']}`,
      '',
      `${s}.${OCTET['booster-2']}`,
      '',
      '', // this host's address: the default (its own)
      '',
      '',
      this.database === 'mariadb' ? 'mysql' : 'postgresql',
      'db1',
      '',
      '',
      '',
      'secret',
      this.secret,
      'y',
      '',
    ].join('\n');
  }

  /** The role each Booster answers on /_booster/active (from the lab machine). */
  async roles(): Promise<Record<string, 'active' | 'standby' | 'down'>> {
    const view = await probePair(
      this.boosters.map((b) => this.boosterUrl(b)),
      this.secret,
      'lab',
    );
    const out: Record<string, 'active' | 'standby' | 'down'> = {};
    for (const b of this.boosters) out[b.name] = view.roles[this.boosterUrl(b)] ?? 'down';
    return out;
  }

  async active(): Promise<Host | null> {
    const r = await this.roles();
    return this.boosters.find((b) => r[b.name] === 'active') ?? null;
  }

  /** Servers the active Booster reports up. */
  async serversUp(): Promise<string[]> {
    return (
      await probePair(
        this.boosters.map((b) => this.boosterUrl(b)),
        this.secret,
        'lab',
      )
    ).serversUp;
  }

  /** The Booster host that carries the VIP on its interface, or null. */
  async vipHolders(): Promise<string[]> {
    const out: string[] = [];
    for (const b of this.boosters) if ((await b.sh(`ip -o -4 addr show dev host0`)).stdout.includes(` ${this.vip}/`)) out.push(b.name);
    return out;
  }

  /** `<script> status` exit code on a host (0 running, 3 stopped, 1 failed). */
  async serviceStatus(host: Host): Promise<number> {
    const script = this.boosters.includes(host) ? '/opt/omflow/Booster/omflow_booster_service' : '/opt/omflow/BoosterAgent/omflow_booster_agent_service';
    return (await host.sh(`${script} status`)).code;
  }

  /**
   * Until systemd runs every OMFLOW unit of the cluster (each service script's status exits 0).
   * A Booster still starting already answers on its port, so roles alone do not show this.
   */
  async waitServicesRunning(timeoutMs = 120_000): Promise<void> {
    await this.waitFor(
      'every OMFLOW service running',
      async () => {
        const codes = await Promise.all([...this.boosters, ...this.agents].map(async (h) => [h.name, await this.serviceStatus(h)] as const));
        const notRunning = codes.filter(([, code]) => code !== 0);
        if (notRunning.length > 0) throw new Error(`not running (status exit code): ${notRunning.map(([n, code]) => `${n} ${code}`).join(', ')}`);
        return true;
      },
      timeoutMs,
      1000,
    );
  }

  async waitFor<T>(what: string, fn: () => Promise<T | false | null | undefined>, timeoutMs = 120_000, intervalMs = 300): Promise<T> {
    const end = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const v = await fn();
        if (v) return v;
      } catch (err) {
        last = err;
      }
      if (Date.now() > end)
        throw new Error(`lab: timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
      await sleep(intervalMs);
    }
  }

  /** One active Booster, one standby, and `servers` app servers up. */
  async waitHealthy(servers = this.agents.length, timeoutMs = 180_000): Promise<void> {
    await this.waitFor(
      `one active and one standby Booster and ${servers} servers up`,
      async () => {
        const r = Object.values(await this.roles());
        return r.filter((x) => x === 'active').length === 1 && r.includes('standby') && (await this.serversUp()).length >= servers;
      },
      timeoutMs,
    );
  }

  /** Ticket load from the client host through the VIP. */
  startLoad(label: string, opts: { workers?: number; count?: number } = {}): TicketLoad {
    const child: ChildProcess = this.client.spawn(['bash', '-c', 'cd /lab/repo && exec node --import tsx test/lab/client/tickets.ts'], {
      TARGET: this.vipUrl,
      LOGIN_USER: ADMIN.user,
      LOGIN_PASSWORD: ADMIN.password,
      LABEL: label,
      WORKERS: String(opts.workers ?? 4),
      COUNT: String(opts.count ?? 0),
    });
    const load: Omit<TicketLoad, 'stop' | 'ready'> = { acks: [], errors: [], firstFailures: [] };
    let stderr = '';
    let buf = '';
    let onReady: () => void;
    let onFail: (e: Error) => void;
    const ready = new Promise<void>((res, rej) => {
      onReady = res;
      onFail = rej;
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let o: Record<string, unknown>;
        try {
          o = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (o.ready) onReady();
        else if (o.ack) load.acks.push({ key: String(o.ack), number: String(o.number), startedAt: Number(o.startedAt), at: Number(o.at) });
        else if (o.error) load.errors.push({ key: String(o.error), why: String(o.why), at: Number(o.at) });
        else if (o.firstFailure) load.firstFailures.push({ key: String(o.firstFailure), why: String(o.why), at: Number(o.at) });
      }
    });
    const exited = new Promise<number>((res) => child.once('exit', (code) => res(code ?? 1)));
    void exited.then((code) => onFail(new Error(`the ticket client exited (${code}) before it was ready: ${stderr.slice(-2000)}`)));
    return Object.assign(load, {
      ready,
      async stop() {
        child.stdin?.end();
        const code = await Promise.race([exited, sleep(30_000).then(() => -1)]);
        if (code === -1) child.kill('SIGKILL');
      },
    });
  }

  /** The database as the lab machine reaches it over the bridge (db1; not under Patroni: see reader()). */
  knex(): Knex {
    if (this.database === 'patroni') throw new Error('under Patroni the database moves: use reader()');
    this.#knex ??= knexFactory(
      this.database === 'mariadb'
        ? { client: 'mysql2', connection: { host: this.db.ip, port: 3306, user: 'omflow', password: 'secret', database: 'omflow' }, pool: { min: 0, max: 2 } }
        : { client: 'pg', connection: { host: this.db.ip, port: 5432, user: 'omflow', password: 'secret', database: 'omflow' }, pool: { min: 0, max: 2 } },
    );
    return this.#knex;
  }

  /** Every acknowledged ticket exactly once with its number, and its automatic steps run once each. */
  async verify(acks: Ack[], label: string, timeoutMs = 90_000): Promise<Verdict> {
    const { knex, done } = await this.reader();
    try {
      return await this.#verify(knex, acks, label, timeoutMs);
    } finally {
      await done();
    }
  }

  async #verify(knex: Knex, acks: Ack[], label: string, timeoutMs: number): Promise<Verdict> {
    const select = () => knex('tickets').where('title', 'like', `lab ${label}-%`).select('id', 'ticket_no', 'title', 'current_step');
    let rows = await select();
    const end = Date.now() + timeoutMs;
    while (rows.some((r) => r.current_step !== FORM_STEP) && Date.now() < end) {
      await sleep(500);
      rows = await select();
    }
    const byKey = new Map<string, string[]>();
    for (const r of rows) {
      const key = String(r.title).slice('lab '.length);
      byKey.set(key, [...(byKey.get(key) ?? []), String(r.ticket_no)]);
    }
    const lost = acks.filter((a) => !byKey.get(a.key)?.includes(a.number)).length;
    const duplicated = [...byKey.values()].filter((n) => n.length > 1).length;
    const ids = rows.map((r) => r.id);
    const done: Array<{ ticket_id: number | string; n: number | string }> = [];
    for (let i = 0; i < ids.length; i += 500)
      done.push(
        ...((await knex('ticket_history')
          .whereIn('ticket_id', ids.slice(i, i + 500))
          .whereIn('step', AUTOMATIC_STEPS)
          .where('action', 'step.done')
          .groupBy('ticket_id')
          .select('ticket_id')
          .count({ n: '*' })) as never[]),
      );
    const doneBy = new Map(done.map((d) => [Number(d.ticket_id), Number(d.n)]));
    const stepsNotOnce = rows.filter((r) => doneBy.get(Number(r.id)) !== AUTOMATIC_STEPS.length || r.current_step !== FORM_STEP).length;
    return { acked: acks.length, lost, duplicated, stepsNotOnce };
  }

  /**
   * Each running host's journal (this boot, the OMFLOW units and the database's), kept in
   * test-artifacts/lab-journals/<lab dir>/ before the hosts go: what to read when a scenario failed.
   */
  async saveJournals(): Promise<void> {
    const out = join(REPO, 'test-artifacts', 'lab-journals', basename(this.opts.dir));
    mkdirSync(out, { recursive: true });
    for (const h of this.hosts.filter((x) => x.running)) {
      const r = await h.sh('journalctl -o short-iso-precise --no-pager -u "omflow-*" -u postgresql@15-main -u mariadb -u "patroni@*" -u etcd', {
        timeoutMs: 60_000,
      });
      writeFileSync(join(out, `${h.name}.log`), r.stdout);
    }
    this.log(`journals saved in ${out}`);
  }

  /** The database for the lab's reads, and how to let it go: db1, or under Patroni the current leader. */
  async reader(): Promise<{ knex: Knex; done: () => Promise<void> }> {
    if (this.database !== 'patroni') return { knex: this.knex(), done: async () => {} };
    const k = await this.#leaderKnex();
    return { knex: k, done: () => k.destroy() };
  }

  async #leaderKnex(): Promise<Knex> {
    for (const host of [this.db, this.db2].filter((h): h is Host => h !== null).map((h) => h.ip)) {
      const k = knexFactory({
        client: 'pg',
        connection: { host, port: 5432, user: 'omflow', password: 'secret', database: 'omflow' },
        pool: { min: 0, max: 2 },
      });
      try {
        const r = await k.raw('SELECT pg_is_in_recovery() AS r');
        if (r.rows[0]?.r === false) return k;
      } catch {
        // down or not ready
      }
      await k.destroy();
    }
    throw new Error('no PostgreSQL leader answers');
  }

  async destroy(): Promise<void> {
    await this.saveJournals().catch((err) => this.log(`journals not saved: ${(err as Error).message}`));
    await this.#knex?.destroy().catch(() => {});
    this.#knex = null;
    await this.lab.destroy();
  }
}
