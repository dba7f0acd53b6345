/**
 * `npm run package`: builds release/Booster_<ver>_linux-<arch>.tar.gz and
 * release/BoosterAgent_<ver>_linux-<arch>.tar.gz for x64 and arm64. Each holds the Node.js
 * runtime the services run on (runtime/, from the npm registry's node-linux-<arch> package,
 * pinned with its integrity in package.json "config.runtime"), compiled JavaScript, production
 * node_modules (offline install), install.sh, uninstall.sh, the systemd unit template, the
 * service script and SHA256SUMS. The agent package carries the app server too (like OMFLOW's
 * Slave package).
 *
 *   tsx install/package.ts [--out DIR] [--arch x64,arm64] [--version V] [--force] [--fast] [--keep-staging]
 *     --arch    the architectures to package (default: both)
 *     --version the release's version (default: package.json's)
 *     --force   package even if the TypeScript build reports type errors (never for a release)
 *     --fast    gzip -1 (tests)
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { arch as hostArch, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface PackageSpec {
  type: 'booster' | 'agent';
  name: string;
  parts: string[];
  unit: string;
  serviceScript: string;
}

export const PACKAGES: PackageSpec[] = [
  { type: 'booster', name: 'Booster', parts: ['common', 'booster', 'migrations'], unit: 'omflow-booster', serviceScript: 'omflow_booster_service' },
  {
    type: 'agent',
    name: 'BoosterAgent',
    parts: ['common', 'agent', 'server', 'migrations'],
    unit: 'omflow-booster-agent',
    serviceScript: 'omflow_booster_agent_service',
  },
];

function sh(cmd: string, args: string[], opts: { cwd?: string; allowFail?: boolean } = {}): { code: number; out: string } {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.status}):\n${out.slice(-4000)}`);
  return { code: r.status ?? 1, out };
}

/** Every file below dir (relative paths), symlinks skipped. */
function walk(dir: string, base = dir, out: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) walk(full, base, out);
    else if (entry.isFile()) out.push(relative(base, full));
  }
  return out;
}

/** Files of a source folder that the compiler does not emit (HTML, CSS, keys, omflow.mjs …). */
function copyAssets(srcDir: string, destDir: string): void {
  if (!existsSync(srcDir)) return;
  for (const rel of walk(srcDir)) {
    if (/\.(ts|tsx|mts|cts)$/.test(rel) || /(^|\/)(__tests__|test)\//.test(rel)) continue;
    mkdirSync(dirname(join(destDir, rel)), { recursive: true });
    copyFileSync(join(srcDir, rel), join(destDir, rel));
  }
}

function sha256(file: string): Promise<string> {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(file)
      .on('data', (d) => h.update(d))
      .on('end', () => res(h.digest('hex')))
      .on('error', rej);
  });
}

async function writeSums(dir: string, files: string[], target: string): Promise<void> {
  const lines: string[] = [];
  for (const rel of files.sort()) lines.push(`${await sha256(join(dir, rel))}  ./${rel}`);
  writeFileSync(target, `${lines.join('\n')}\n`);
}

/**
 * Copies the production dependencies (package-lock entries not marked dev) of a node_modules
 * tree, without asking a registry. Hard links when possible: nothing below is ever modified.
 */
function copyProductionDeps(from: string, to: string): void {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const byParent = new Map<string, string[]>();
  for (const [key, entry] of Object.entries(lock.packages)) {
    if (!key.startsWith('node_modules/') || entry.dev) continue;
    const name = key.slice('node_modules/'.length);
    // Nested node_modules come along with their top-level package.
    if (name.includes('/node_modules/') || !existsSync(join(from, name))) continue;
    const parent = name.startsWith('@') ? name.split('/')[0] : '';
    byParent.set(parent, [...(byParent.get(parent) ?? []), join(from, name)]);
  }
  for (const [parent, sources] of byParent) {
    mkdirSync(join(to, parent), { recursive: true });
    copyTree(sources, `${join(to, parent)}/`, true);
  }
}

export type RuntimeArch = 'x64' | 'arm64';
export const RUNTIME_ARCHES: readonly RuntimeArch[] = ['x64', 'arm64'];

interface RuntimePin {
  package: string;
  version: string;
  integrity: Record<string, string>;
}

/** The architecture this machine's packages are for (the lab and the tests install those). */
export function defaultArch(): RuntimeArch {
  const a = hostArch();
  if (a === 'x64' || a === 'arm64') return a;
  throw new Error(`no Node.js runtime is packaged for ${a}: use --arch x64 or --arch arm64`);
}

/**
 * The pinned Node.js runtime for `arch`, unpacked: `<dir>/bin/node` and its LICENSE. Fetched once
 * with `npm pack` (the registry's ordinary client), checked against the pinned integrity, and
 * cached in node_modules/.cache so later builds work offline.
 */
function fetchRuntime(pin: RuntimePin, arch: RuntimeArch, log: (m: string) => void): string {
  const name = pin.package.replace('{arch}', arch);
  const expected = pin.integrity[arch];
  if (!expected) throw new Error(`package.json config.runtime.integrity has no entry for ${arch}`);
  const cache = join(ROOT, 'node_modules', '.cache', 'omflow-runtime');
  const tgz = join(cache, `${name}-${pin.version}.tgz`);
  const dir = join(cache, `${name}-${pin.version}`);
  const integrityOf = (file: string) => `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;
  if (existsSync(join(dir, 'bin', 'node')) && existsSync(tgz) && integrityOf(tgz) === expected) return dir;
  mkdirSync(cache, { recursive: true });
  log(`fetching the Node.js runtime ${name}@${pin.version} (npm pack)`);
  sh('npm', ['pack', `${name}@${pin.version}`, '--pack-destination', cache, '--silent'], { cwd: cache });
  const got = integrityOf(tgz);
  if (got !== expected) {
    rmSync(tgz, { force: true });
    throw new Error(`${name}@${pin.version}: integrity ${got} is not the pinned ${expected}`);
  }
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  sh('tar', ['-xzf', tgz, '-C', dir, '--strip-components=1', 'package/bin/node', 'package/LICENSE']);
  return dir;
}

/** cp -al (hard links, same file system) with a cp -a fallback. */
function copyTree(src: string | string[], dest: string, intoDir = false): void {
  const sources = Array.isArray(src) ? src : [src];
  if (!intoDir) mkdirSync(dirname(dest), { recursive: true });
  const linked = sh('cp', ['-al', ...sources, dest], { allowFail: true });
  if (linked.code !== 0) sh('cp', ['-a', ...sources, dest]);
}

export async function buildPackages(opts: {
  out: string;
  /** Architectures of the runtime to package (default: this machine's). */
  arches?: readonly RuntimeArch[];
  /** The release's version (default: package.json's). */
  version?: string;
  force?: boolean;
  fast?: boolean;
  keepStaging?: boolean;
  log?: (m: string) => void;
}): Promise<string[]> {
  const log = opts.log ?? ((m: string) => process.stdout.write(`[package] ${m}\n`));
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    name: string;
    version: string;
    dependencies: Record<string, string>;
    engines?: Record<string, string>;
    config: { runtime: RuntimePin };
  };
  const arches = opts.arches ?? [defaultArch()];
  const version = opts.version ?? pkg.version;
  if (!/^[0-9A-Za-z][0-9A-Za-z.+-]*$/.test(version)) throw new Error(`version '${version}' may hold only letters, digits, . + -`);
  const staging = mkdtempSync(join(tmpdir(), 'omflow-package-'));
  const commit = sh('git', ['rev-parse', '--short', 'HEAD'], { allowFail: true }).out.trim().split('\n')[0] || 'unknown';
  try {
    log(`compiling TypeScript (install/tsconfig.build.json)`);
    const tsc = sh(
      join(ROOT, 'node_modules', '.bin', 'tsc'),
      ['-p', 'install/tsconfig.build.json', '--outDir', join(staging, 'dist'), '--sourceMap', 'false'],
      { allowFail: true },
    );
    if (tsc.code !== 0) {
      if (!opts.force) throw new Error(`the TypeScript build has errors (use --force to package anyway):\n${tsc.out.slice(-4000)}`);
      log(`WARNING: type errors ignored (--force):\n${tsc.out.split('\n').slice(0, 10).join('\n')}`);
    }

    log('collecting production dependencies');
    const deps = join(staging, 'deps', 'node_modules');
    copyProductionDeps(join(ROOT, 'node_modules'), deps);
    // Source maps, type declarations and docs are half the tree and never run (licences stay).
    sh('find', [
      deps,
      '-type',
      'f',
      '(',
      '-name',
      '*.map',
      '-o',
      '-name',
      '*.ts',
      '-o',
      '-name',
      '*.mts',
      '-o',
      '-name',
      '*.cts',
      '-o',
      '-name',
      '*.md',
      '-o',
      '-name',
      '*.markdown',
      '-o',
      '-name',
      '*.tsbuildinfo',
      ')',
      '!',
      '-iname',
      'licen[cs]e*',
      '-delete',
    ]);

    mkdirSync(opts.out, { recursive: true });
    const tarballs: string[] = [];
    const runtimes = new Map(arches.map((a) => [a, fetchRuntime(pkg.config.runtime, a, log)]));
    for (const [arch, runtime] of runtimes)
      for (const spec of PACKAGES) {
        const dirName = `${spec.name}_${version}`;
        const dir = join(staging, dirName);
        const app = join(dir, 'app');
        log(`assembling ${dirName} for linux-${arch}`);
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(app, { recursive: true });
        // The runtime the units and scripts use (install.sh --node overrides it).
        mkdirSync(join(dir, 'runtime', 'bin'), { recursive: true });
        copyFileSync(join(runtime, 'bin', 'node'), join(dir, 'runtime', 'bin', 'node'));
        chmodSync(join(dir, 'runtime', 'bin', 'node'), 0o755);
        copyFileSync(join(runtime, 'LICENSE'), join(dir, 'runtime', 'LICENSE'));
        for (const part of spec.parts) {
          const compiled = join(staging, 'dist', part);
          if (existsSync(compiled)) cpSync(compiled, join(app, part), { recursive: true });
          else log(`WARNING: ${part}/ has no compiled output (not in this tree yet?)`);
          copyAssets(join(ROOT, part), join(app, part));
        }
        writeFileSync(
          join(app, 'package.json'),
          `${JSON.stringify({ name: pkg.name, version, private: true, type: 'module', engines: pkg.engines, bin: { omflow: 'common/bin/omflow.mjs' }, dependencies: pkg.dependencies }, null, 2)}\n`,
        );
        copyTree(deps, join(app, 'node_modules'));

        const inst = join(ROOT, 'install');
        for (const f of ['install.sh', 'uninstall.sh']) {
          copyFileSync(join(inst, f), join(dir, f));
          chmodSync(join(dir, f), 0o755);
        }
        mkdirSync(join(dir, 'scripts'));
        for (const f of [spec.serviceScript, 'service-common.sh']) {
          copyFileSync(join(inst, 'scripts', f), join(dir, 'scripts', f));
          chmodSync(join(dir, 'scripts', f), 0o755);
        }
        mkdirSync(join(dir, 'systemd'));
        copyFileSync(join(inst, 'systemd', `${spec.unit}.service.in`), join(dir, 'systemd', `${spec.unit}.service.in`));
        mkdirSync(join(dir, 'docs'));
        for (const f of ['operator-guide.md', 'configuration.md', 'errors.md'])
          if (existsSync(join(ROOT, 'docs', f))) copyFileSync(join(ROOT, 'docs', f), join(dir, 'docs', f));
        if (existsSync(join(inst, 'README.md'))) copyFileSync(join(inst, 'README.md'), join(dir, 'README.md'));
        // Prometheus alert rules and their tests, the Grafana dashboard (install/monitoring/README.md).
        cpSync(join(inst, 'monitoring'), join(dir, 'monitoring'), { recursive: true });
        writeFileSync(
          join(dir, 'PACKAGE'),
          `TYPE=${spec.type}\nVERSION=${version}\nARCH=linux-${arch}\nNODE=${pkg.config.runtime.version}\nCOMMIT=${commit}\nBUILT=${new Date().toISOString()}\n`,
        );
        // Native sha256sum: the tree holds thousands of files.
        const sums = sh('sh', ['-c', 'find . -type f ! -path ./SHA256SUMS -print0 | LC_ALL=C sort -z | xargs -0 sha256sum'], { cwd: dir }).out;
        writeFileSync(join(dir, 'SHA256SUMS'), sums);

        const tarball = join(resolve(opts.out), `${dirName}_linux-${arch}.tar.gz`);
        log(`writing ${relative(ROOT, tarball) || tarball}`);
        sh('tar', ['-C', staging, '--owner=0', '--group=0', '--numeric-owner', '-I', opts.fast ? 'gzip -1' : 'gzip -6', '-cf', tarball, dirName]);
        tarballs.push(tarball);
      }
    await writeSums(
      resolve(opts.out),
      tarballs.map((t) => relative(resolve(opts.out), t)),
      join(resolve(opts.out), 'SHA256SUMS'),
    );
    return tarballs;
  } finally {
    if (opts.keepStaging) log(`staging kept in ${staging}`);
    else rmSync(staging, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const outAt = args.indexOf('--out');
  const out = outAt >= 0 ? resolve(args[outAt + 1]) : join(ROOT, 'release');
  const archAt = args.indexOf('--arch');
  const arches = archAt >= 0 ? (args[archAt + 1] ?? '').split(',') : RUNTIME_ARCHES;
  const unknown = arches.filter((a) => !RUNTIME_ARCHES.includes(a as RuntimeArch));
  (unknown.length
    ? Promise.reject(new Error(`unknown --arch ${unknown.join(',')} (x64, arm64)`))
    : buildPackages({
        out,
        arches: arches as RuntimeArch[],
        version: args.includes('--version') ? args[args.indexOf('--version') + 1] : undefined,
        force: args.includes('--force'),
        fast: args.includes('--fast'),
        keepStaging: args.includes('--keep-staging'),
      })
  ).then(
    (files) => {
      for (const f of files) process.stdout.write(`${f}\n`);
    },
    (err: Error) => {
      process.stderr.write(`package: ${err.message}\n`);
      process.exitCode = 1;
    },
  );
}
