import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { freePort } from '../helpers/processes.js';
import { cleanEnv, readEnvFile, runScript, sourcePackage } from './helpers.js';

// The installer's dialogue, answered on stdin as an operator would type it.
describe('install.sh asks its questions (interactive path)', () => {
  let tdb: TestDatabase;
  let work: string;
  beforeAll(async () => {
    tdb = await createTestDatabase('postgres');
    work = mkdtempSync(join(tmpdir(), 'omflow-install-interactive-'));
  });
  afterAll(async () => {
    await tdb?.drop();
    rmSync(work, { recursive: true, force: true });
  });

  it('installs a Booster from typed answers, re-asks bad ones, refuses SQLite, migrates, and keeps the answers on re-run', async () => {
    const pkg = sourcePackage('booster', join(work, 'pkg'));
    const prefix = join(work, 'root');
    const tls = makeCert(work, 'interactive');
    const [port, haPort] = [await freePort(), await freePort()];
    const db = new URL(tdb.url);
    const answers = [
      '127.0.0.1', // This Booster's IP
      '99999', // port: invalid, asked again
      String(port),
      '127.0.0.1', // HA Booster
      String(haPort),
      tls.cert, // HTTPS certificate
      tls.key,
      'sqlite', // refused, asked again
      'postgresql',
      db.hostname,
      db.port,
      db.pathname.slice(1),
      decodeURIComponent(db.username),
      decodeURIComponent(db.password),
      '', // cluster secret: generate
      'y', // proceed
    ];
    const first = await runScript(join(pkg, 'install.sh'), ['--prefix', prefix], { input: `${answers.join('\n')}\n`, env: cleanEnv() });
    expect(first.stderr + first.stdout).toContain('is installed');
    expect(first.code).toBe(0);
    expect(first.stderr).toContain("This Booster's port [5169]:");
    expect(first.stderr).toContain('Please enter a port number');
    expect(first.stderr).toContain('SQLite is refused');
    expect(first.stdout).toContain(`HTTPS:              https://127.0.0.1:${port} (${tls.cert}: CN=localhost`);

    const envFile = join(prefix, 'etc/omflow/booster.env');
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
    const env = readEnvFile(readFileSync(envFile, 'utf8'));
    expect(env.OMFLOW_BOOSTER_PORT).toBe(String(port));
    expect(env.OMFLOW_BOOSTER_ADVERTISE_URL).toBe(`http://127.0.0.1:${port}`);
    expect(env.OMFLOW_BOOSTER_PEER_URL).toBe(`http://127.0.0.1:${haPort}`);
    expect([env.OMFLOW_BOOSTER_TLS_CERT_FILE, env.OMFLOW_BOOSTER_TLS_KEY_FILE]).toEqual([tls.cert, tls.key]);
    expect(env.OMFLOW_CLUSTER_SECRET).toMatch(/^[0-9a-f]{48}$/);
    expect(new URL(env.OMFLOW_DB_URL).pathname).toBe(db.pathname);
    // The installer ran the migrations.
    expect(await tdb.knex.schema.hasTable('booster_lease')).toBe(true);
    const unit = readFileSync(join(prefix, 'etc/systemd/system/omflow-booster.service'), 'utf8');
    expect(unit).toContain(`EnvironmentFile=${envFile}`);

    // Re-running is an upgrade: every question offers the current answer.
    const again = await runScript(join(pkg, 'install.sh'), ['--prefix', prefix], { input: `${'\n'.repeat(8)}y\n`, env: cleanEnv() });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain(`This Booster's port [${port}]:`);
    expect(again.stderr).toContain('Keep the database settings');
    expect(again.stdout).toContain('(upgraded)');
    const env2 = readEnvFile(readFileSync(envFile, 'utf8'));
    expect(env2.OMFLOW_CLUSTER_SECRET).toBe(env.OMFLOW_CLUSTER_SECRET);
    expect(env2.OMFLOW_DB_URL).toBe(env.OMFLOW_DB_URL);
    expect(env2.OMFLOW_BOOSTER_TLS_KEY_FILE).toBe(tls.key);

    // Answering "n" to the confirmation changes nothing.
    const no = await runScript(join(pkg, 'install.sh'), ['--prefix', prefix], { input: `${'\n'.repeat(8)}n\n`, env: cleanEnv() });
    expect(no.code).toBe(1);
    expect(no.stdout).toContain('Nothing was changed');
  });

  it('refuses an agent install without the cluster secret, and SQLite, when unattended', async () => {
    const pkg = sourcePackage('agent', join(work, 'pkg-agent'));
    const common = ['--prefix', join(work, 'agent-root'), '--non-interactive', '--booster-ip', '127.0.0.1'];
    const noSecret = await runScript(join(pkg, 'install.sh'), [...common, '--db-url', tdb.url], { env: cleanEnv() });
    expect(noSecret.code).not.toBe(0);
    expect(noSecret.stderr).toContain('cluster secret is required');
    const sqlite = await runScript(join(pkg, 'install.sh'), [...common, '--db-type', 'sqlite'], { env: cleanEnv({ OMFLOW_CLUSTER_SECRET: 'x'.repeat(32) }) });
    expect(sqlite.code).not.toBe(0);
    expect(sqlite.stderr).toContain('SQLite is refused');
    const sqliteUrl = await runScript(join(pkg, 'install.sh'), [...common], {
      env: cleanEnv({ OMFLOW_CLUSTER_SECRET: 'x'.repeat(32), OMFLOW_DB_URL: 'sqlite:///tmp/x.db' }),
    });
    expect(sqliteUrl.code).not.toBe(0);
    expect(sqliteUrl.stderr).toContain('SQLite is refused');
  });

  for (const vendor of vendorsUnderTest()) {
    it(`installs unattended from separate database answers on ${vendor} (URL built and encoded by the installer) and migrates it`, async () => {
      const vdb = await createTestDatabase(vendor);
      try {
        const u = new URL(vdb.url);
        const pkg = sourcePackage('booster', join(work, `pkg-${vendor}`));
        const prefix = join(work, `root-${vendor}`);
        const r = await runScript(
          join(pkg, 'install.sh'),
          [
            '--prefix',
            prefix,
            '--non-interactive',
            '--booster-ip',
            '127.0.0.1',
            '--booster-port',
            String(await freePort()),
            '--listen',
            '127.0.0.1',
            '--db-type',
            vendor === 'postgres' ? 'postgresql' : vendor,
            '--db-host',
            u.hostname,
            '--db-port',
            u.port,
            '--db-name',
            u.pathname.slice(1),
            '--db-user',
            decodeURIComponent(u.username),
          ],
          { env: cleanEnv({ OMFLOW_DB_PASSWORD: decodeURIComponent(u.password), OMFLOW_CLUSTER_SECRET: 'unattended-secret-0123456789' }) },
        );
        expect(r.code, r.stdout + r.stderr).toBe(0);
        const env = readEnvFile(readFileSync(join(prefix, 'etc/omflow/booster.env'), 'utf8'));
        expect(env.OMFLOW_CLUSTER_SECRET).toBe('unattended-secret-0123456789');
        expect(new URL(env.OMFLOW_DB_URL).protocol).toBe(`${vendor}:`);
        expect(await vdb.knex.schema.hasTable('booster_lease')).toBe(true);
      } finally {
        await vdb.drop();
      }
    });
  }

  it('checks before it changes anything: damaged package, old Node.js, port in use', async () => {
    const pkg = sourcePackage('booster', join(work, 'pkg-checks'));
    const prefix = join(work, 'root-checks');
    const port = await freePort();
    const args = [
      '--prefix',
      prefix,
      '--non-interactive',
      '--booster-ip',
      '127.0.0.1',
      '--booster-port',
      String(port),
      '--listen',
      '127.0.0.1',
      '--db-url',
      tdb.url,
    ];
    const env = cleanEnv({ OMFLOW_CLUSTER_SECRET: 'checks-secret-0123456789' });

    const fakeNode = join(work, 'node18');
    writeFileSync(fakeNode, '#!/bin/sh\necho 18.19.0\n');
    chmodSync(fakeNode, 0o755);
    const old = await runScript(join(pkg, 'install.sh'), [...args, '--node', fakeNode], { env });
    expect(old.code).not.toBe(0);
    expect(old.stderr).toContain('Node.js 18.19.0 is too old');

    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', () => r()));
    try {
      const busy = await runScript(join(pkg, 'install.sh'), args, { env });
      expect(busy.code).not.toBe(0);
      expect(busy.stderr).toContain(`port ${port} on 127.0.0.1 is already in use`);
    } finally {
      await new Promise((r) => blocker.close(r));
    }

    // A key that belongs to another certificate is refused before anything is written.
    const a = makeCert(work, 'checks-a');
    const b = makeCert(work, 'checks-b');
    const mismatch = await runScript(join(pkg, 'install.sh'), [...args, '--tls-cert', a.cert, '--tls-key', b.key], { env });
    expect(mismatch.code).not.toBe(0);
    expect(mismatch.stderr).toContain(`TLS certificate ${a.cert} with key ${b.key}: the key does not match the certificate`);
    const halfTls = await runScript(join(pkg, 'install.sh'), [...args, '--tls-cert', a.cert], { env });
    expect(halfTls.stderr).toContain('HTTPS needs both a certificate');

    writeFileSync(join(pkg, 'SHA256SUMS'), `${'0'.repeat(64)}  ./install.sh\n`);
    const damaged = await runScript(join(pkg, 'install.sh'), args, { env });
    expect(damaged.code).not.toBe(0);
    expect(damaged.stderr).toContain('the package is damaged');
    // Nothing was installed by any of the refused runs.
    expect(() => statSync(join(prefix, 'opt/omflow/Booster'))).toThrow();
  });
});

describe('install.sh renders the unit for this host (perl for readiness, the VIP drop-in)', () => {
  let tdb: TestDatabase;
  let work: string;
  beforeAll(async () => {
    tdb = await createTestDatabase('postgres');
    work = mkdtempSync(join(tmpdir(), 'omflow-install-unit-'));
  });
  afterAll(async () => {
    await tdb?.drop();
    rmSync(work, { recursive: true, force: true });
  });

  /** A PATH holding every command of this one except `without` (links in a directory of the test's). */
  function pathWithout(name: string, without: RegExp): string {
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    for (const d of (process.env.PATH ?? '').split(':').filter((x) => existsSync(x)))
      for (const f of readdirSync(d)) if (!without.test(f) && !existsSync(join(dir, f))) symlinkSync(join(d, f), join(dir, f));
    return dir;
  }

  it('Type=notify with the watchdog; without perl Type=exec and says so; --vip writes the drop-in, --vip - removes it; no arping is refused by name', async () => {
    const pkg = sourcePackage('booster', join(work, 'pkg'));
    const prefix = join(work, 'root');
    const args = [
      '--prefix',
      prefix,
      '-y',
      '--booster-ip',
      '127.0.0.1',
      '--booster-port',
      String(await freePort()),
      '--listen',
      '127.0.0.1',
      '--db-url',
      tdb.url,
    ];
    const env = cleanEnv({ OMFLOW_CLUSTER_SECRET: 'unit-secret-0123456789' });
    const unit = () => readFileSync(join(prefix, 'etc/systemd/system/omflow-booster.service'), 'utf8');
    const dropIn = join(prefix, 'etc/systemd/system/omflow-booster.service.d/vip.conf');

    const vip = await runScript(join(pkg, 'install.sh'), [...args, '--vip', '10.0.0.10/24', '--vip-interface', 'eth0'], { env });
    expect(vip.code, vip.stdout + vip.stderr).toBe(0);
    expect(unit()).toMatch(/^Type=notify$/m);
    expect(unit()).toMatch(/^WatchdogSec=30s$/m);
    expect(unit()).toMatch(/^ExecReload=\/\S+\/kill -HUP \$MAINPID$/m);
    expect(readFileSync(dropIn, 'utf8')).toMatch(/^AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW$/m);
    expect(readFileSync(dropIn, 'utf8')).toMatch(/^ExecStopPost=-\/\S+\/ip -4 addr del \$\{OMFLOW_BOOSTER_VIP\} dev \$\{OMFLOW_BOOSTER_VIP_INTERFACE\}$/m);
    expect(readEnvFile(readFileSync(join(prefix, 'etc/omflow/booster.env'), 'utf8'))).toMatchObject({
      OMFLOW_BOOSTER_VIP: '10.0.0.10/24',
      OMFLOW_BOOSTER_VIP_INTERFACE: 'eth0',
    });

    // Re-run on a host without perl: no sd_notify, so Type=exec without the watchdog; the VIP stays (kept answers).
    const noPerl = await runScript(join(pkg, 'install.sh'), ['--prefix', prefix, '-y'], { env: cleanEnv({ PATH: pathWithout('no-perl', /^perl/) }) });
    expect(noPerl.code, noPerl.stdout + noPerl.stderr).toBe(0);
    expect(noPerl.stdout).toContain('perl is missing');
    expect(unit()).toMatch(/^Type=exec$/m);
    expect(unit()).not.toMatch(/^(WatchdogSec|NotifyAccess)=/m);
    expect(existsSync(dropIn)).toBe(true);

    const off = await runScript(join(pkg, 'install.sh'), ['--prefix', prefix, '-y', '--vip', '-'], { env });
    expect(off.code, off.stdout + off.stderr).toBe(0);
    expect(existsSync(dropIn)).toBe(false);
    expect(readEnvFile(readFileSync(join(prefix, 'etc/omflow/booster.env'), 'utf8')).OMFLOW_BOOSTER_VIP).toBe('');

    const noArping = await runScript(join(pkg, 'install.sh'), [...args, '--vip', '10.0.0.10/24', '--vip-interface', 'eth0'], {
      env: cleanEnv({ PATH: pathWithout('no-arping', /^arping$/), OMFLOW_CLUSTER_SECRET: 'unit-secret-0123456789' }),
    });
    expect(noArping.code).not.toBe(0);
    expect(noArping.stderr).toContain("install iputils-arping (or Debian's arping package)");
  });
});

/** A self-signed certificate made by openssl, as an operator would bring one. */
function makeCert(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-keyout', key, '-out', cert, '-subj', '/CN=localhost'],
    { stdio: 'ignore' },
  );
  return { cert, key };
}
