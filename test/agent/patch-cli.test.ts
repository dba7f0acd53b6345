import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTrustedKeys, verifyPatch } from '../../common/patch/index.js';
import { startOmflow } from '../helpers/processes.js';
import { FIXTURE_RELEASE } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'omflow-patch-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function omflow(args: string[]): Promise<{ code: number | null; out: string }> {
  const p = startOmflow('patch-cli', args, {});
  const code = await p.exited;
  await p.stop();
  return { code, out: p.output() };
}

describe('omflow patch keygen | build', () => {
  it('creates a key pair and a signed patch that verifies with the printed trusted-key entry', async () => {
    const keygen = await omflow(['patch', 'keygen', '--out', join(dir, 'keys')]);
    expect(keygen.code, keygen.out).toBe(0);
    const entry = /OMFLOW_PATCH_TRUSTED_KEYS=(\S+)/.exec(keygen.out)![1];
    const out = join(dir, 'p.tar.gz');
    const build = await omflow([
      'patch',
      'build',
      FIXTURE_RELEASE,
      '--version',
      '3.1.4',
      '--sequence',
      '7',
      '--key',
      join(dir, 'keys', 'patch-private.pem'),
      '--out',
      out,
    ]);
    expect(build.code, build.out).toBe(0);
    const v = verifyPatch(readFileSync(out), loadTrustedKeys([entry], { includeVendor: false }));
    expect(v.manifest).toMatchObject({ version: '3.1.4', sequence: 7 });
    // The public PEM file works as a trusted-key entry too.
    expect(verifyPatch(readFileSync(out), loadTrustedKeys([join(dir, 'keys', 'patch-public.pem')], { includeVendor: false })).manifest.keyId).toBe(
      entry.split('=')[0],
    );
  });

  it('refuses to build from a directory that is not a release', async () => {
    const r = await omflow(['patch', 'build', dir, '--version', '1.0.0', '--sequence', '1', '--key', join(dir, 'keys', 'patch-private.pem')]);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('AGENT_ERR_PATCH_NOT_A_RELEASE');
  });
});
