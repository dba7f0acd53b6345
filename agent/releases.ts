import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { extractToStaging, RELEASE_ENTRY, RELEASE_META, VERSION_PATTERN, type VerifiedPatch } from '../common/patch/index.js';
import { AgentErrors } from './errors.js';

export interface ReleaseMeta {
  version: string;
  sequence: number;
  installedAt: string;
  keyId: string | null;
  bootstrap: boolean;
  /** Bootstrap releases: digest of the source tree they were copied from. */
  sourceDigest?: string;
}

/** What a bootstrap release is copied from: the app server's code of an install. */
const BOOTSTRAP_PARTS = ['server', 'common', 'migrations', 'package.json'];

/**
 * OMFLOW_DATA_DIR/releases/<version>/ plus OMFLOW_DATA_DIR/current → releases/<version>.
 * `current` is switched by creating a temporary symlink and rename()-ing it over the old one,
 * which is atomic: a reader sees the old or the new release, never none.
 */
export class ReleaseStore {
  readonly releasesDir: string;
  readonly currentLink: string;

  constructor(
    readonly dataDir: string,
    private readonly opts: { keep: number; nodeModules?: string },
  ) {
    this.releasesDir = join(dataDir, 'releases');
    this.currentLink = join(dataDir, 'current');
  }

  dirOf(version: string): string {
    return join(this.releasesDir, version);
  }

  /** Removes staging leftovers of an interrupted install. */
  prepare(): void {
    mkdirSync(this.releasesDir, { recursive: true });
    for (const name of readdirSync(this.releasesDir)) if (name.startsWith('.staging-')) rmSync(join(this.releasesDir, name), { recursive: true, force: true });
  }

  has(version: string): boolean {
    return existsSync(join(this.dirOf(version), RELEASE_META));
  }

  meta(version: string): ReleaseMeta | null {
    try {
      return JSON.parse(readFileSync(join(this.dirOf(version), RELEASE_META), 'utf8')) as ReleaseMeta;
    } catch {
      return null;
    }
  }

  /** Version `current` points at, or null. */
  currentVersion(): string | null {
    try {
      const target = readlinkSync(this.currentLink);
      const version = target.split('/').filter(Boolean).pop()!;
      return this.has(version) ? version : null;
    } catch {
      return null;
    }
  }

  current(): ReleaseMeta | null {
    const v = this.currentVersion();
    return v ? this.meta(v) : null;
  }

  list(): ReleaseMeta[] {
    if (!existsSync(this.releasesDir)) return [];
    return readdirSync(this.releasesDir)
      .filter((n) => !n.startsWith('.'))
      .map((n) => this.meta(n))
      .filter((m): m is ReleaseMeta => m !== null)
      .sort((a, b) => a.sequence - b.sequence || a.installedAt.localeCompare(b.installedAt));
  }

  switchCurrent(version: string): void {
    if (!this.has(version)) throw AgentErrors.AGENT_ERR_NO_RELEASE(`release ${version} is not installed`);
    const tmp = join(this.dataDir, `.current-${randomBytes(6).toString('hex')}`);
    symlinkSync(join('releases', version), tmp);
    renameSync(tmp, this.currentLink);
  }

  private finish(staging: string, meta: ReleaseMeta): string {
    // The agent makes the only link of a release itself, after verification.
    if (this.opts.nodeModules && existsSync(this.opts.nodeModules)) symlinkSync(this.opts.nodeModules, join(staging, 'node_modules'), 'dir');
    writeFileSync(join(staging, RELEASE_META), JSON.stringify(meta, null, 2));
    const final = this.dirOf(meta.version);
    if (existsSync(final)) rmSync(final, { recursive: true, force: true });
    renameSync(staging, final);
    return final;
  }

  private stagingDir(version: string): string {
    return join(this.releasesDir, `.staging-${version}-${randomBytes(4).toString('hex')}`);
  }

  /** Digest of the parts of an install a bootstrap release is copied from. */
  static sourceDigest(sourceDir: string): string {
    const hash = createHash('sha256');
    const walk = (abs: string, rel: string) => {
      const st = lstatSync(abs);
      if (st.isDirectory()) {
        for (const name of readdirSync(abs).sort()) if (name !== 'node_modules') walk(join(abs, name), `${rel}/${name}`);
      } else if (st.isFile()) {
        hash.update(`${rel}\0${st.size}\0`);
        hash.update(readFileSync(abs));
      }
    };
    for (const part of BOOTSTRAP_PARTS) if (existsSync(join(sourceDir, part))) walk(join(sourceDir, part), part);
    return hash.digest('hex');
  }

  /**
   * While no patch was ever installed, the current release is the installed code: when the
   * install changed (a new package, or edited sources in development), copy it again.
   */
  refreshBootstrap(sourceDir: string): ReleaseMeta | null {
    const cur = this.current();
    if (!cur?.bootstrap || cur.sequence !== 0 || this.list().some((r) => r.sequence > 0)) return null;
    if (!existsSync(join(sourceDir, RELEASE_ENTRY)) || cur.sourceDigest === ReleaseStore.sourceDigest(sourceDir)) return null;
    return this.bootstrap(sourceDir);
  }

  /** First start: the initial release is a copy of the installed app-server code. */
  bootstrap(sourceDir: string): ReleaseMeta {
    if (!existsSync(join(sourceDir, RELEASE_ENTRY))) throw AgentErrors.AGENT_ERR_NO_RELEASE(`${sourceDir} holds no ${RELEASE_ENTRY}`);
    let version = '0.0.0';
    try {
      version = String(JSON.parse(readFileSync(join(sourceDir, 'package.json'), 'utf8')).version ?? version);
    } catch {
      /* no package.json: 0.0.0 */
    }
    if (!VERSION_PATTERN.test(version)) version = '0.0.0';
    this.prepare();
    const staging = this.stagingDir(version);
    mkdirSync(staging);
    for (const part of BOOTSTRAP_PARTS) {
      const src = join(sourceDir, part);
      if (!existsSync(src)) continue;
      cpSync(src, join(staging, part), { recursive: true, dereference: true, filter: (s) => !s.split('/').includes('node_modules') });
    }
    const meta: ReleaseMeta = {
      version,
      sequence: 0,
      installedAt: new Date().toISOString(),
      keyId: null,
      bootstrap: true,
      sourceDigest: ReleaseStore.sourceDigest(sourceDir),
    };
    this.finish(staging, meta);
    this.switchCurrent(version);
    return meta;
  }

  /** Extracts a verified patch into staging, then renames it to releases/<version>. */
  install(patch: VerifiedPatch): ReleaseMeta {
    const m = patch.manifest;
    if (this.meta(m.version)?.sequence === m.sequence) return this.meta(m.version)!;
    this.prepare();
    const staging = this.stagingDir(m.version);
    try {
      extractToStaging(patch, staging);
      const meta: ReleaseMeta = { version: m.version, sequence: m.sequence, installedAt: new Date().toISOString(), keyId: m.keyId, bootstrap: false };
      this.finish(staging, meta);
      return meta;
    } catch (err) {
      rmSync(staging, { recursive: true, force: true });
      throw err;
    }
  }

  /** Keeps the current release, `protect`ed ones and the newest others up to `keep` in all. */
  prune(protect: readonly string[] = []): string[] {
    const current = this.currentVersion();
    const all = this.list().reverse(); // newest first
    const keep = new Set([current, ...protect].filter(Boolean) as string[]);
    for (const r of all) if (keep.size < this.opts.keep) keep.add(r.version);
    const removed: string[] = [];
    for (const r of all) {
      if (keep.has(r.version)) continue;
      const dir = this.dirOf(r.version);
      if (lstatSync(dir).isDirectory()) {
        rmSync(dir, { recursive: true, force: true });
        removed.push(r.version);
      }
    }
    return removed;
  }
}
