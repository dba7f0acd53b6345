/**
 * Lab hosts: systemd-nspawn containers booted (`-b`) from the cached Debian 12 rootfs, each on a
 * copy-on-write overlay of it (so a reboot keeps its state and a new lab starts clean), with its
 * own address on a bridge the lab creates. Nothing routes off the bridge. Facts this relies on
 * (see the design notes): `--register=no --keep-unit` because there is no machined here,
 * commands run with `nsenter -t <the container's systemd> -a`, SIGTERM to systemd-nspawn powers
 * a container off cleanly, and its directory must outlive it.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Why the lab cannot run on this machine, or null. */
export function labUnavailable(): string | null {
  if (process.platform !== 'linux') return 'the lab needs Linux';
  if (process.getuid?.() !== 0) return 'the lab needs root (systemd-nspawn, bridges, overlay mounts)';
  for (const bin of ['systemd-nspawn', 'debootstrap', 'nsenter', 'ip', 'flock'])
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0)
      return `${bin} is not installed (apt-get install systemd-container debootstrap iproute2 util-linux)`;
  if (!readFileSync('/proc/filesystems', 'utf8').includes('overlay')) return 'the kernel has no overlay file system';
  const probe = `omflabp${randomBytes(2).toString('hex')}`;
  const r = spawnSync('ip', ['link', 'add', probe, 'type', 'bridge'], { encoding: 'utf8' });
  if (r.status !== 0) return `cannot create a bridge: ${r.stderr.trim()}`;
  spawnSync('ip', ['link', 'del', probe]);
  return null;
}

function run(cmd: string, args: string[], opts: { allowFail?: boolean; input?: string } = {}): ExecResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, maxBuffer: 64 * 1024 * 1024 });
  const res = { code: r.status ?? 1, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? r.error.message : ''}` };
  if (res.code !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${res.code}): ${res.stderr.trim() || res.stdout.trim()}`);
  return res;
}

/** Runs a command to completion without blocking the event loop (bounded). */
export function runAsync(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      stderr += `\n[lab] timed out after ${opts.timeoutMs} ms`;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 300_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: 127, stdout, stderr: `${stderr}${err.message}` });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** The first of a few private /24s that no route or address of this machine touches. */
function freeSubnet(): string {
  const used = `${run('ip', ['-4', 'route', 'show', 'table', 'all']).stdout}\n${run('ip', ['-4', '-o', 'addr']).stdout}`;
  for (let third = 0; third < 64; third++) {
    const net = `10.231.${third}`;
    if (!used.includes(`${net}.`)) return net;
  }
  throw new Error('no free 10.231.x.0/24 for the lab bridge');
}

export interface HostSpec {
  name: string;
  /** Last octet of its address on the lab bridge. */
  octet: number;
  binds?: Array<{ from: string; to: string; readOnly?: boolean }>;
}

export class Host {
  readonly ip: string;
  #nspawn: ChildProcess | null = null;
  #leader = 0;
  #exited: Promise<number> = Promise.resolve(0);
  #boots = 0;

  constructor(
    readonly lab: Lab,
    readonly name: string,
    readonly machine: string,
    octet: number,
    readonly dir: string,
    readonly binds: HostSpec['binds'] = [],
  ) {
    this.ip = `${lab.subnet}.${octet}`;
  }

  /** The host-side end of its veth pair (systemd-nspawn's name for it). */
  get veth(): string {
    return `vb-${this.machine}`.slice(0, 15);
  }

  get running(): boolean {
    return this.#nspawn !== null;
  }

  /** Boots the container and waits until systemd reports the system up. */
  async boot(): Promise<void> {
    if (this.#nspawn) return;
    const merged = join(this.dir, 'merged');
    const args = [
      '-q',
      '-D',
      merged,
      '-b',
      '--register=no',
      '--keep-unit',
      '-M',
      this.machine,
      `--hostname=${this.name}`,
      `--network-bridge=${this.lab.bridge}`,
      '--resolv-conf=off',
      '--timezone=off',
      '--link-journal=no',
      '--console=read-only',
      ...(this.binds ?? []).map((b) => `--bind${b.readOnly === false ? '' : '-ro'}=${b.from}:${b.to}`),
    ];
    const log = createWriteStream(join(this.dir, `console-${++this.#boots}.log`));
    const child = spawn('systemd-nspawn', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pipe(log);
    child.stderr.pipe(log);
    this.#nspawn = child;
    this.#exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        if (this.#nspawn === child) this.#nspawn = null;
        this.#leader = 0;
        resolve(code ?? (signal ? 128 : 1));
      }),
    );
    this.#leader = await this.#findLeader(child);
    await this.waitBooted();
  }

  async #findLeader(child: ChildProcess): Promise<number> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`${this.name}: systemd-nspawn exited (${child.exitCode}); see ${this.dir}/console-${this.#boots}.log`);
      for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
        try {
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
          if (ppid === child.pid && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'systemd') return Number(pid);
        } catch {
          // gone
        }
      }
      await sleep(100);
    }
    throw new Error(`${this.name}: the container's systemd did not appear`);
  }

  /** Until `systemctl is-system-running` says running or degraded (bounded). */
  async waitBooted(timeoutMs = 90_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      if (this.#leader) {
        const r = await this.exec(['systemctl', 'is-system-running'], { timeoutMs: 10_000 });
        last = r.stdout.trim();
        if (last === 'running' || last === 'degraded') return;
      }
      await sleep(300);
    }
    const failed = this.#leader ? (await this.exec(['systemctl', '--failed', '--no-legend'])).stdout : '';
    throw new Error(`${this.name} did not finish booting (${last}); failed units: ${failed}`);
  }

  /** Runs a command inside (all its namespaces), with a clean environment. */
  exec(argv: string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<ExecResult> {
    if (!this.#leader) return Promise.resolve({ code: 255, stdout: '', stderr: `${this.name} is not running` });
    const env = Object.entries({ PATH: HOST_PATH, HOME: '/root', LANG: 'C.UTF-8', TERM: 'dumb', ...opts.env }).map(([k, v]) => `${k}=${v}`);
    return runAsync('nsenter', ['-t', String(this.#leader), '-a', '--', 'env', '-i', ...env, ...argv], { input: opts.input, timeoutMs: opts.timeoutMs });
  }

  /** A bash script inside, as root in /root. */
  sh(script: string, opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<ExecResult> {
    return this.exec(['bash', '-c', `cd /root && ${script}`], opts);
  }

  /** Like sh, but a non-zero exit throws with the output. */
  async must(script: string, opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<string> {
    const r = await this.sh(script, opts);
    if (r.code !== 0) throw new Error(`${this.name}: \`${script}\` exited ${r.code}:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
    return r.stdout;
  }

  /** A long-running process inside; its stdio are the returned child's pipes. */
  spawn(argv: string[], env: Record<string, string> = {}): ChildProcess {
    if (!this.#leader) throw new Error(`${this.name} is not running`);
    const vars = Object.entries({ PATH: HOST_PATH, HOME: '/root', LANG: 'C.UTF-8', ...env }).map(([k, v]) => `${k}=${v}`);
    // stdin stays open: closing it is how the lab asks a client to finish.
    return spawn('nsenter', ['-t', String(this.#leader), '-a', '--', 'env', '-i', ...vars, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
  }

  /** `systemctl reboot` inside; systemd-nspawn then exits with 133 and the lab boots it again, as a machine's firmware would. */
  async reboot(): Promise<void> {
    await this.exec(['systemctl', 'reboot'], { timeoutMs: 10_000 });
    const code = await this.#withTimeout(this.#exited, 120_000, 'reboot');
    if (code !== 133) throw new Error(`${this.name}: systemd-nspawn exited ${code} on reboot (133 expected)`);
    await this.boot();
  }

  /** Clean shutdown (SIGTERM to systemd-nspawn: the container powers off). */
  async shutdown(timeoutMs = 60_000): Promise<void> {
    const child = this.#nspawn;
    if (!child) return;
    child.kill('SIGTERM');
    try {
      await this.#withTimeout(this.#exited, timeoutMs, 'power-off');
    } catch {
      await this.powerCut();
    }
  }

  /** The power cord: SIGKILL to the container's init ends every process in it at once. */
  async powerCut(): Promise<void> {
    if (!this.#nspawn) return;
    if (this.#leader) process.kill(this.#leader, 'SIGKILL');
    await this.#withTimeout(this.#exited, 30_000, 'power cut').catch(() => this.#nspawn?.kill('SIGKILL'));
    await this.#exited;
  }

  /** Unplugs (or plugs back) its network cable: the host end of its veth goes down (up). */
  link(up: boolean): void {
    run('ip', ['link', 'set', this.veth, up ? 'up' : 'down']);
  }

  async #withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    let t: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${this.name}: ${what} took over ${ms} ms`)), ms))),
      ]);
    } finally {
      clearTimeout(t);
    }
  }
}

/** A bridge and the hosts on it; `destroy()` leaves nothing behind (containers, mounts, bridge, dirs). */
export class Lab {
  readonly hosts = new Map<string, Host>();
  readonly bridge: string;
  readonly subnet: string;
  readonly id = randomBytes(2).toString('hex');
  #mounted: string[] = [];

  constructor(
    readonly rootfs: string,
    readonly dir: string,
  ) {
    this.bridge = `omflab${this.id}`;
    this.subnet = freeSubnet();
  }

  /** The lab machine's own address on the bridge (tests reach the hosts from it). */
  get gateway(): string {
    return `${this.subnet}.1`;
  }

  createNetwork(): void {
    run('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    run('ip', ['addr', 'add', `${this.gateway}/24`, 'dev', this.bridge]);
    run('ip', ['link', 'set', this.bridge, 'up']);
  }

  /** Prepares a host's overlay (hostname, address, /etc/hosts of the whole lab) without booting it. */
  add(spec: HostSpec): Host {
    // Short and unique: the host end of its veth is named after it (15 characters at most).
    const machine = `l${this.id}n${this.hosts.size}`;
    const dir = join(this.dir, spec.name);
    for (const d of ['upper', 'work', 'merged']) mkdirSync(join(dir, d), { recursive: true });
    const merged = join(dir, 'merged');
    run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${this.rootfs},upperdir=${join(dir, 'upper')},workdir=${join(dir, 'work')}`, merged]);
    this.#mounted.push(merged);
    const host = new Host(this, spec.name, machine, spec.octet, dir, spec.binds);
    writeFileSync(join(merged, 'etc/hostname'), `${spec.name}\n`);
    writeFileSync(join(merged, 'etc/machine-id'), `${randomBytes(16).toString('hex')}\n`);
    mkdirSync(join(merged, 'etc/systemd/network'), { recursive: true });
    writeFileSync(
      join(merged, 'etc/systemd/network/10-host0.network'),
      `[Match]\nName=host0\n\n[Network]\nAddress=${host.ip}/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n`,
    );
    this.hosts.set(spec.name, host);
    this.#writeHosts();
    return host;
  }

  #writeHosts(): void {
    const lines = ['127.0.0.1 localhost', `${this.gateway} lab`, ...[...this.hosts.values()].map((h) => `${h.ip} ${h.name}`)];
    for (const h of this.hosts.values()) writeFileSync(join(h.dir, 'merged', 'etc/hosts'), `${lines.join('\n')}\n`);
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no lab host ${name}`);
    return h;
  }

  /** Powers every host off, unmounts, removes the bridge and the directories. Idempotent. */
  async destroy(): Promise<void> {
    await Promise.all([...this.hosts.values()].map((h) => h.shutdown(30_000).catch(() => h.powerCut())));
    for (const m of this.#mounted.splice(0).reverse()) {
      const r = run('umount', [m], { allowFail: true });
      if (r.code !== 0) run('umount', ['-l', m], { allowFail: true });
    }
    run('ip', ['link', 'del', this.bridge], { allowFail: true });
    if (existsSync(this.dir)) rmSync(this.dir, { recursive: true, force: true });
  }
}
