/**
 * The lab's Debian 12 root file systems, built once with debootstrap from the Debian mirror this
 * machine's apt already uses and cached: hosts on the lab bridge have no outside network, so
 * whatever a host needs is installed here. Two layers: `base` (what the smoke scenario needs:
 * systemd, PostgreSQL, iproute2, iputils-arping) and `full` (base plus Chromium, MariaDB, Patroni,
 * etcd, and Debian's other `arping` downloaded for an offline swap). Each is built in a temp dir
 * and renamed into place, so an interrupted build never leaves a half rootfs behind.
 *
 *   npx tsx test/lab/rootfs.ts [base|full]   builds (or finds) the cached rootfs and prints its path
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type RootfsLayer = 'base' | 'full';

/** Into debootstrap: what systemd needs to boot, plus the tools every lab host uses. */
const DEBOOTSTRAP_INCLUDE = ['systemd', 'systemd-sysv', 'dbus', 'iproute2', 'curl', 'ca-certificates', 'procps', 'psmisc'];
/** Installed with apt into `base`: the database host's PostgreSQL and the VIP's tools. */
const BASE_PACKAGES = ['postgresql', 'iputils-arping', 'iputils-ping', 'less'];
/** Into `full`: the client's browser, the other databases and the Patroni tier. */
const FULL_PACKAGES = ['chromium', 'fonts-noto-cjk', 'mariadb-server', 'mariadb-client', 'patroni', 'etcd-server', 'etcd-client', 'python3-etcd'];
/** Downloaded (not installed) into `full`: conflicts with iputils-arping; a scenario swaps it in offline. */
const FULL_DOWNLOADS = ['arping'];
/** Enabled by the lab per host, not at every boot of every host. */
const DISABLED_SERVICES = ['postgresql', 'mariadb', 'etcd', 'patroni'];
/** Bumped when the build steps change, so an old cache is not taken for a new one. */
const RECIPE = 2;

export const LAB_CACHE_DIR = process.env.OMFLOW_LAB_CACHE ?? '/var/cache/omflow-lab';

function run(cmd: string, args: string[], opts: { input?: string; log?: (m: string) => void } = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input, maxBuffer: 256 * 1024 * 1024, stdio: ['pipe', 'pipe', 'pipe'] });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${`${r.stdout}${r.stderr}`.slice(-3000)}`);
  return r.stdout;
}

/** The deb822 stanzas of this machine's Debian sources (other vendors' repositories are left out). */
export function debianSources(): { mirror: string; sources: string } {
  const stanzas: string[] = [];
  const dirs = ['/etc/apt/sources.list.d'];
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.sources')))
      for (const s of readFileSync(join(dir, f), 'utf8').split(/\n\s*\n/))
        if (/^URIs:.*\/debian(-security)?\/?\s*$/m.test(s) && /^Suites:.*bookworm/m.test(s)) stanzas.push(s.trim());
  }
  // One-line format (/etc/apt/sources.list) as well.
  const lines: string[] = [];
  if (existsSync('/etc/apt/sources.list'))
    for (const l of readFileSync('/etc/apt/sources.list', 'utf8').split('\n'))
      if (/^deb\s+(\[[^\]]*\]\s+)?\S+\/debian(-security)?\/?\s+bookworm/.test(l)) lines.push(l);
  const main = [...stanzas.map((s) => /^URIs:\s*(\S+)/m.exec(s)?.[1]), ...lines.map((l) => l.split(/\s+/).find((w) => /^https?:/.test(w)))].find(
    (u) => u && /\/debian\/?$/.test(u),
  );
  if (!main) throw new Error('no Debian bookworm mirror in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources');
  const sources = `${stanzas.join('\n\n')}\n${lines.length ? `\n# from sources.list\n${lines.join('\n')}\n` : ''}`;
  return { mirror: main, sources };
}

function layerKey(layer: RootfsLayer): string {
  const spec = JSON.stringify({
    RECIPE,
    DEBOOTSTRAP_INCLUDE,
    BASE_PACKAGES,
    DISABLED_SERVICES,
    ...(layer === 'full' ? { FULL_PACKAGES, FULL_DOWNLOADS } : {}),
  });
  return `${layer}-bookworm-${createHash('sha256').update(spec).digest('hex').slice(0, 10)}`;
}

/** Path of the cached rootfs of a layer when it exists, else null. */
export function cachedRootfs(layer: RootfsLayer): string | null {
  const dir = join(LAB_CACHE_DIR, layerKey(layer));
  return existsSync(join(dir, 'etc/os-release')) ? dir : null;
}

/** Runs a command in a rootfs (not booted), with the host's network and resolver. */
function inRoot(root: string, script: string): string {
  return run('systemd-nspawn', [
    '-q',
    '-D',
    root,
    '--register=no',
    '--keep-unit',
    '--resolv-conf=copy-host',
    '-E',
    'DEBIAN_FRONTEND=noninteractive',
    'sh',
    '-ec',
    script,
  ]);
}

function buildBase(target: string, log: (m: string) => void): void {
  const { mirror, sources } = debianSources();
  log(`debootstrap bookworm from ${mirror} (a few minutes, once)`);
  run('debootstrap', ['--variant=minbase', `--include=${DEBOOTSTRAP_INCLUDE.join(',')}`, 'bookworm', target, mirror]);
  writeFileSync(join(target, 'etc/apt/sources.list.d/debian.sources'), sources);
  rmSync(join(target, 'etc/apt/sources.list'), { force: true });
  // Package scripts must not start services in the build container.
  writeFileSync(join(target, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  log(`apt-get install ${BASE_PACKAGES.join(' ')}`);
  inRoot(target, `apt-get update -qq && apt-get install -y -qq --no-install-recommends ${BASE_PACKAGES.join(' ')} >/dev/null && apt-get clean`);
  finish(target);
}

function buildFull(base: string, target: string, log: (m: string) => void): void {
  run('cp', ['-a', `${base}/.`, target]);
  writeFileSync(join(target, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
  log(`apt-get install ${FULL_PACKAGES.join(' ')} (once)`);
  inRoot(
    target,
    `apt-get update -qq && apt-get install -y -qq --no-install-recommends ${FULL_PACKAGES.join(' ')} >/dev/null && apt-get clean && ` +
      `apt-get install -y -qq --no-install-recommends --download-only ${FULL_DOWNLOADS.join(' ')} >/dev/null`,
  );
  finish(target);
}

/** Common last steps: networkd for the hosts' static addresses, no services that do not belong. */
function finish(target: string): void {
  rmSync(join(target, 'usr/sbin/policy-rc.d'), { force: true });
  const disable = DISABLED_SERVICES.map((s) => `systemctl disable ${s}.service >/dev/null 2>&1 || true`).join('; ');
  inRoot(
    target,
    `systemctl enable systemd-networkd.service >/dev/null 2>&1; ${disable}; ` +
      `rm -rf /var/lib/apt/lists/partial/*; ` +
      `echo 'root:lab' | chpasswd; : > /etc/machine-id`,
  );
}

/**
 * The cached rootfs of a layer, built when missing (serialised with flock: two runs never
 * build at once). Root only; needs debootstrap and systemd-nspawn.
 */
export function ensureRootfs(layer: RootfsLayer): string {
  const found = cachedRootfs(layer);
  if (found) return found;
  mkdirSync(LAB_CACHE_DIR, { recursive: true });
  // Re-enter under the cache lock; the winner builds, the others find its result.
  const lock = join(LAB_CACHE_DIR, '.build.lock');
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync('flock', [lock, process.execPath, '--import', 'tsx', self, '--build', layer], {
    stdio: ['ignore', 'inherit', 'inherit'],
    cwd: resolve(self, '../../..'),
  });
  if (r.status !== 0) throw new Error(`building the ${layer} rootfs failed (exit ${r.status})`);
  const built = cachedRootfs(layer);
  if (!built) throw new Error(`the ${layer} rootfs is missing after its build`);
  return built;
}

function buildLocked(layer: RootfsLayer, log: (m: string) => void): string {
  const done = cachedRootfs(layer);
  if (done) return done;
  const dir = join(LAB_CACHE_DIR, layerKey(layer));
  const tmp = `${dir}.building`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const started = Date.now();
  try {
    if (layer === 'base') buildBase(tmp, log);
    else buildFull(ensureRootfsLocked('base', log), tmp, log);
    renameSync(tmp, dir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  log(`${layer} rootfs built in ${((Date.now() - started) / 1000).toFixed(0)} s: ${dir}`);
  return dir;
}

function ensureRootfsLocked(layer: RootfsLayer, log: (m: string) => void): string {
  return cachedRootfs(layer) ?? buildLocked(layer, log);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const log = (m: string) => process.stderr.write(`[lab] ${m}\n`);
  const args = process.argv.slice(2);
  try {
    if (args[0] === '--build') process.stdout.write(`${buildLocked(args[1] as RootfsLayer, log)}\n`);
    else process.stdout.write(`${ensureRootfs((args[0] as RootfsLayer | undefined) ?? 'base')}\n`);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
