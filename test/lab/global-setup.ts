import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { buildRelease, REPO } from './cluster.js';
import { figure, seconds } from './figures.js';
import { labUnavailable } from './hosts.js';
import { ensureRootfs } from './rootfs.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Why the lab cannot run here ('' when it can). */
    labSkip: string;
    rootfs: string;
    /** `npm run package` output of this checkout. */
    releaseDir: string;
    /** The same, packaged as a newer version (the upgrade scenarios; --full only). */
    newReleaseDir: string;
    full: boolean;
  }
}

/**
 * Once per lab run: the cached Debian rootfs (built on first use) and the release packages,
 * built with `npm run package` like a release manager does.
 */
export default async function setup(project: TestProject): Promise<() => void> {
  const full = process.env.OMFLOW_LAB_FULL === '1';
  project.provide('full', full);
  const why = labUnavailable();
  project.provide('labSkip', why ?? '');
  if (why) {
    process.stderr.write(`[lab] SKIPPED: ${why}\n`);
    return () => {};
  }
  const rootfs = ensureRootfs(full ? 'full' : 'base');
  project.provide('rootfs', rootfs);
  const work = mkdtempSync(join(tmpdir(), 'omflow-lab-release-'));
  // OMFLOW_LAB_RELEASE_DIR: packages built beforehand (debugging the lab itself).
  const releaseDir = process.env.OMFLOW_LAB_RELEASE_DIR ?? join(work, 'release');
  if (!process.env.OMFLOW_LAB_RELEASE_DIR) figure('release', 'npm run package (this architecture)', seconds(buildRelease(releaseDir)));
  project.provide('releaseDir', releaseDir);
  let newReleaseDir = '';
  if (full) {
    newReleaseDir = join(work, 'release-new');
    const next = `${(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version}-lab.2`;
    figure('release', `npm run package -- --version ${next}`, seconds(buildRelease(newReleaseDir, ['--version', next])));
  }
  project.provide('newReleaseDir', newReleaseDir);
  return () => rmSync(work, { recursive: true, force: true });
}
