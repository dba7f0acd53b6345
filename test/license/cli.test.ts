import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createLicenseVerifier } from '../../common/license/index.js';
import { runCli } from '../server/helpers.js';

describe('omflow license keygen | issue | verify (vendor tools, real child processes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'omflow-license-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keygen writes a private key only its owner can read; issue signs a license the matching public key verifies', async () => {
    const key = join(dir, 'vendor');
    const gen = await runCli(['license', 'keygen', '--out', key, '--key-id', 'test-2026'], {});
    expect(gen.code, gen.stderr).toBe(0);
    expect(statSync(`${key}.pem`).mode & 0o077).toBe(0);
    const out = join(dir, 'acme.omflowlic');
    const issued = await runCli(
      [
        'license',
        'issue',
        '--key',
        `${key}.pem`,
        '--key-id',
        'test-2026',
        '--customer',
        'ACME K.K.',
        '--expires',
        '2030-03-31',
        '--max-servers',
        '4',
        '--cluster-id',
        'c-123',
        '--grace-days',
        '10',
        '--features',
        'ha,patches',
        '--out',
        out,
      ],
      {},
    );
    expect(issued.code, issued.stderr).toBe(0);
    const lic = createLicenseVerifier({ keys: { 'test-2026': readFileSync(`${key}.pub.pem`, 'utf8') } }).verify(readFileSync(out));
    expect(lic).toMatchObject({
      customer: 'ACME K.K.',
      expiresAt: '2030-03-31T00:00:00.000Z',
      clusterId: 'c-123',
      graceDays: 10,
      limits: { maxServers: 4 },
      features: ['ha', 'patches'],
    });

    const ok = await runCli(['license', 'verify', out, '--public-key', `${key}.pub.pem`, '--key-id', 'test-2026'], {});
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('ACME K.K.');
    // The release only trusts its pinned vendor keys: a license from this key is refused with its code.
    const pinned = await runCli(['license', 'verify', out], {});
    expect(pinned.code).toBe(1);
    expect(pinned.stderr).toContain('COMMON_ERR_LICENSE_UNKNOWN_KEY');
    const bad = await runCli(['license', 'issue', '--key', `${key}.pem`, '--customer', 'X', '--expires', '2030-01-01', '--max-servers', 'many'], {});
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--max-servers');
  });
});
