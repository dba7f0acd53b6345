/**
 * The full lab (--full): a cluster's life as operators live it, on booted Debian 12 hosts, with
 * the operator guide's commands. Install in the start order; the watchdog; a patch rolled out
 * while one app-server host is down; every kind of failover of the active Booster under ticket
 * load (systemctl stop, power-off, link down) and 20 timed kill -9 trials; a rolling upgrade of the
 * whole cluster under load; the license uploaded in Chromium on the admin page (after the upgrade:
 * the lab's license key is injected into the code the hosts run); every host rebooted; uninstall.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { signLicense } from '../../common/license/index.js';
import { ADMIN, LabCluster, labDir, longestGap, median, releaseIn } from './cluster.js';
import { figure, seconds } from './figures.js';
import type { Host } from './hosts.js';
import { bootAndInstall, CRASH_ERRORS, checkSystemdView, failover, ticketsThroughVip } from './scenarios.js';

const skip = inject('labSkip') || (inject('full') ? '' : 'the full lab only (npm run test:lab -- --full)');
const S = 'lifecycle';
const AGENT_HOME = '/opt/omflow/BoosterAgent';
/** How long PostgreSQL stays down after its host is back, in the reboot scenario. */
const DB_LATE_MS = 90_000;

/**
 * Holds a lock file shared with the machine's benchmarks (OMFLOW_LAB_BENCH_LOCK) while `fn` runs,
 * so timed trials never overlap another benchmark; without the variable it just runs `fn`.
 */
async function withBenchLock<T>(fn: () => Promise<T>): Promise<T> {
  const file = process.env.OMFLOW_LAB_BENCH_LOCK;
  if (!file) return fn();
  const holder = spawn('flock', [file, '-c', 'echo locked; exec cat'], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder.stdout.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`flock ${file} exited ${code}`)));
  });
  try {
    return await fn();
  } finally {
    holder.stdin.end();
  }
}

describe.skipIf(skip !== '')(`lifecycle: license, patches, failovers, upgrade, reboots, uninstall${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let c: LabCluster;

  beforeAll(() => {
    c = new LabCluster({ rootfs: inject('rootfs'), dir: labDir(), release: releaseIn(inject('releaseDir')), agents: 3 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('installs database, Booster pair and three app servers with the guide commands', async () => {
    await bootAndInstall(c, S);
    await checkSystemdView(c, S);
    await ticketsThroughVip(c, 'life-first');
  });

  it('the watchdog: a standby Booster whose event loop stops (SIGSTOP) is killed and restarted by systemd', async () => {
    const roles = await c.roles();
    const standby = c.boosters.find((b) => roles[b.name] === 'standby')!;
    const pid = (await standby.must('systemctl show -p MainPID --value omflow-booster')).trim();
    const t = Date.now();
    await standby.must(`kill -STOP ${pid}`);
    await c.waitFor(
      'the watchdog restart',
      async () => (await standby.must('systemctl show -p NRestarts --value omflow-booster')).trim() === '1',
      180_000,
      1000,
    );
    await c.waitFor('the standby back', async () => (await c.roles())[standby.name] === 'standby' && (await c.serviceStatus(standby)) === 0, 120_000);
    figure(S, 'watchdog: event loop stopped → restarted standby', seconds(Date.now() - t));
    expect(await standby.must('journalctl -u omflow-booster -o cat --no-pager')).toMatch(/[Ww]atchdog timeout/);
    expect((await c.active())?.name).not.toBe(standby.name);
  });

  it('a patch applied on one app-server host reaches every host; the host that was down gets it when it is back', async () => {
    const [first, second, third] = c.agents as [Host, Host, Host];
    const keygen = await first.must(`${AGENT_HOME}/bin/omflow patch keygen --out /root/patch-key`);
    const entry = /^OMFLOW_PATCH_TRUSTED_KEYS=(.+)$/m.exec(keygen)?.[1];
    expect(entry).toBeTruthy();
    for (const a of c.agents) await c.guide(a, 'patch-trust', { fill: { '<entry>': entry! } });
    await c.waitHealthy(3);
    // A new app-server release: the current one (without the agent's own record of it) with a
    // marker file, signed with the new key.
    await first.must(`rm -rf /root/patch-src && cp -a "$(readlink -f /var/lib/omflow/agent/current)" /root/patch-src && rm -f /root/patch-src/.omflow-release.json && echo lab > /root/patch-src/LAB-PATCH
      ${AGENT_HOME}/bin/omflow patch build /root/patch-src --version 1.4.2 --sequence 42 --key /root/patch-key/patch-private.pem --out /root/omflow-server-1.4.2.patch.tar.gz`);

    await third.shutdown();
    try {
      await rolloutWithOneDown(first, second, third);
    } finally {
      if (!third.running) await third.boot();
    }
    await c.waitHealthy(3);
    await ticketsThroughVip(c, 'life-patched');
  });

  async function rolloutWithOneDown(first: Host, second: Host, third: Host): Promise<void> {
    const t = Date.now();
    const applied = await c.guide(first, 'patch-apply');
    expect(applied).toMatch(/patch 1\.4\.2 \(sequence 42\) stored/);
    const versions = async () =>
      Object.fromEntries(
        (
          (JSON.parse(await first.must(`${AGENT_HOME}/bin/omflow patch status --json`)) as { nodes: Array<{ serverId: string; version: string | null }> })
            .nodes ?? []
        ).map((n) => [n.serverId, n.version]),
      );
    await c.waitFor('app-1 and app-2 on 1.4.2', async () => {
      const v = await versions();
      return v['app-1-agent'] === '1.4.2' && v['app-2-agent'] === '1.4.2';
    });
    figure(S, 'patch rollout to the 2 hosts up', seconds(Date.now() - t));
    expect(await second.must('cat /var/lib/omflow/agent/current/LAB-PATCH')).toBe('lab\n');
    expect((await versions())['app-3-agent']).not.toBe('1.4.2');

    const back = Date.now();
    await third.boot();
    await c.waitFor('app-3 on 1.4.2 after its boot', async () => (await versions())['app-3-agent'] === '1.4.2', 240_000);
    figure(S, 'host down during the rollout: boot → patched', seconds(Date.now() - back));
    expect(await third.must('cat /var/lib/omflow/agent/current/LAB-PATCH')).toBe('lab\n');
  }

  it('systemctl stop of the active Booster: the standby takes over; started again it is the standby', async () => {
    const r = await failover(
      c,
      'life-stop',
      (active) => c.guide(active, 'drill-stop').then(() => {}),
      (old) => c.guide(old, 'drill-restart').then(() => {}),
    );
    figure(S, 'systemctl stop: new active / longest client gap', `${seconds(r.takeoverMs)} / ${seconds(r.gapMs)} (acked ${r.acked})`);
  });

  it('power-off of the active Booster host: the standby takes over; the host boots back as standby', async () => {
    const r = await failover(
      c,
      'life-power',
      (active) => active.powerCut(),
      (old) => old.boot(),
      { crash: true },
    );
    figure(
      S,
      'power-off: new active / longest client gap',
      `${seconds(r.takeoverMs)} / ${seconds(r.gapMs)} (acked ${r.acked}, errors after retry ${r.errors})`,
    );
  });

  it('network partition of the active Booster host (link down): the standby takes over; the old one steps down when it is back', async () => {
    const r = await failover(
      c,
      'life-link',
      async (active) => active.link(false),
      async (old) => {
        await sleep(5000);
        old.link(true);
      },
    );
    figure(S, 'link-down: new active / longest client gap', `${seconds(r.takeoverMs)} / ${seconds(r.gapMs)} (acked ${r.acked})`);
  });

  it('20 kill -9 trials of the active Booster under one steady ticket load, timed as the client sees them (bench lock held)', async () => {
    const load = c.startLoad('life-trials');
    await load.ready;
    const trials: Array<{ gapMs: number; takeoverMs: number }> = [];
    try {
      await withBenchLock(async () => {
        for (let i = 0; i < 20; i++) {
          const old = await c.waitFor('an active Booster', () => c.active(), 60_000);
          const other = c.boosters.find((b) => b !== old)!;
          const since = Date.now();
          await c.waitFor('tickets flowing before the kill', async () => load.acks.filter((a) => a.at > since).length >= 10, 60_000);
          const killedAt = Date.now();
          await c.guide(old, 'drill-kill');
          await c.waitFor(`${other.name} active`, async () => (await c.roles())[other.name] === 'active', 60_000, 100);
          const takeoverMs = Date.now() - killedAt;
          await c.waitFor('tickets after the takeover', async () => load.acks.filter((a) => a.at > killedAt + 500).length >= 10, 60_000);
          // This trial's window: from 1 s before the kill to the tenth ticket after the takeover.
          const until = load.acks
            .map((x) => x.at)
            .filter((at) => at > killedAt + 500)
            .sort((x, y) => x - y)[9]!;
          const gapMs = longestGap(
            load.acks.filter((x) => x.at <= until),
            killedAt - 1000,
          );
          trials.push({ gapMs, takeoverMs });
          figure(`${S} trial ${i + 1}`, 'kill -9: new active / longest client gap', `${seconds(takeoverMs)} / ${seconds(gapMs)}`);
          await c.waitFor(`${old.name} back as standby`, async () => (await c.roles())[old.name] === 'standby' && (await c.serviceStatus(old)) === 0, 120_000);
        }
      });
    } finally {
      await load.stop();
    }
    const v = await c.verify(load.acks, 'life-trials');
    const gaps = trials.map((t) => t.gapMs);
    const takeovers = trials.map((t) => t.takeoverMs);
    figure(S, '20 × kill -9: new active median / max', `${seconds(median(takeovers))} / ${seconds(Math.max(...takeovers))}`);
    figure(
      S,
      '20 × kill -9: client gap median / max',
      `${seconds(median(gaps))} / ${seconds(Math.max(...gaps))} (acked ${v.acked}, lost ${v.lost}, duplicated ${v.duplicated}, errors after retry ${load.errors.length})`,
    );
    expect(v).toMatchObject({ lost: 0, duplicated: 0, stepsNotOnce: 0 });
    const unexpected = load.errors.filter((e) => !CRASH_ERRORS.test(e.why));
    expect(unexpected, JSON.stringify(unexpected.slice(0, 5))).toEqual([]);
  });

  it('rolling upgrade of the whole cluster under ticket load: standby, active, then app servers one at a time; nothing lost, no error after one retry', async () => {
    const next = releaseIn(inject('newReleaseDir'));
    const vars = { newVersion: next.version };
    const load = c.startLoad('life-upgrade');
    await load.ready;
    await c.waitFor('tickets flowing', async () => load.acks.length >= 20, 60_000);
    const t = Date.now();
    try {
      const active = (await c.active())!;
      const standby = c.boosters.find((b) => b !== active)!;
      for (const b of [standby, active]) {
        await c.copyTo(b, next);
        await c.guide(b, 'upgrade-booster', { vars });
        await c.waitHealthy(3);
      }
      for (const a of c.agents) {
        await c.copyTo(a, next);
        await c.guide(a, 'upgrade-agent', { vars });
        await c.waitHealthy(3);
      }
      const done = Date.now();
      await c.waitFor('tickets after the upgrade', async () => load.acks.filter((a) => a.at > done).length >= 10, 60_000);
    } finally {
      await load.stop();
    }
    figure(
      S,
      'rolling upgrade of 5 hosts under load',
      `${seconds(Date.now() - t)} (acked ${load.acks.length}, first tries failed ${load.firstFailures.length})`,
    );
    figure(S, 'rolling upgrade: longest client gap', seconds(longestGap(load.acks, t)));
    for (const h of [...c.boosters, ...c.agents]) expect(await h.must('cat /opt/omflow/*/PACKAGE')).toContain(`VERSION=${next.version}`);
    expect(await c.verify(load.acks, 'life-upgrade')).toMatchObject({ lost: 0, duplicated: 0, stepsNotOnce: 0 });
    expect(load.errors, JSON.stringify(load.errors.slice(0, 5))).toEqual([]);
  });

  it('the license uploaded on the admin page in Chromium lifts the expired trial gate on both Boosters', async () => {
    // The vendor's private key is not ours to use: the lab trusts a key of its own on every host,
    // as the browser test injects its key, then restarts the services to load it.
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const install = `for f in $(find /opt/omflow /var/lib/omflow -path '*/common/license/keys.js'); do
      node=$(ls /opt/omflow/*/runtime/bin/node | head -1)
      "$node" -e 'const fs = require("fs"); const [f, k] = process.argv.slice(1); fs.writeFileSync(f, fs.readFileSync(f, "utf8").replace("Object.freeze({", "Object.freeze({ \\"lab-key-1\\": " + JSON.stringify(k) + ","))' "$f" '${pem}'
    done`;
    for (const h of [...c.boosters, ...c.agents]) await h.must(install);
    for (const a of c.agents) await a.must('systemctl restart omflow-booster-agent');
    const roles = await c.roles();
    for (const b of [...c.boosters].sort((x, y) => (roles[x.name] === 'standby' ? -1 : 0) - (roles[y.name] === 'standby' ? -1 : 0))) {
      await b.must('systemctl restart omflow-booster');
      await c.waitHealthy(3);
    }

    // The trial ran out (8 days ago by the database): the data plane answers the license page.
    await c.knex().raw(`UPDATE license_state SET trial_started_at = trial_started_at - interval '8 days'`);
    await c.waitFor('the gate closed on both Boosters', async () => {
      for (const b of c.boosters) if ((await b.sh(`/opt/omflow/Booster/bin/omflow license status --url ${c.boosterUrl(b)}`)).code !== 3) return false;
      return true;
    });
    const gated = await c.client.must(`curl -s -o /dev/null -w '%{http_code}' ${c.vipUrl}/api/tickets`);
    expect(gated).toBe('503');

    const clusterId = String((await c.knex()('license_state').first('cluster_id')).cluster_id);
    const license = signLicense(
      {
        v: 1,
        licenseId: 'lab-0001',
        keyId: 'lab-key-1',
        customer: 'OMFLOW Lab K.K.',
        issuedAt: new Date(Date.now() - 86_400_000).toISOString(),
        notBefore: new Date(Date.now() - 86_400_000).toISOString(),
        expiresAt: new Date(Date.now() + 365 * 86_400_000).toISOString(),
        graceDays: 14,
        clusterId,
        limits: { maxServers: 4 },
        features: ['ha', 'patches'],
      },
      privateKey,
    );
    const file = join(c.share, 'lab.omflowlic');
    writeFileSync(file, license);
    const t = Date.now();
    const page = await c.client.must('cd /lab/repo && node --import tsx test/lab/client/license-upload.ts', {
      env: { TARGET: c.vipUrl, LOGIN_USER: ADMIN.user, LOGIN_PASSWORD: ADMIN.password, LICENSE_FILE: '/lab/share/lab.omflowlic' },
      timeoutMs: 120_000,
    });
    const shown = JSON.parse(page.trim().split('\n').pop()!) as { before: string; customer: string; state: string; text: string };
    expect(shown).toMatchObject({ before: 'expired', customer: 'OMFLOW Lab K.K.', state: 'licensed' });
    await c.waitFor('the gate lifted on both Boosters', async () => {
      for (const b of c.boosters) {
        const r = await b.sh(`/opt/omflow/Booster/bin/omflow license status --url ${c.boosterUrl(b)}`);
        if (r.code !== 0 || !r.stdout.includes('Licensed to OMFLOW Lab K.K.')) return false;
      }
      return true;
    });
    figure(S, 'license in Chromium (log in, upload, apply) → both lifted', seconds(Date.now() - t));
    expect(await c.guide(c.boosters[0], 'license-status')).toContain('Licensed to OMFLOW Lab K.K.');
    await ticketsThroughVip(c, 'life-licensed');
  });

  it('every host rebooted at once, the database host last and its PostgreSQL later still: the cluster comes back by itself', async () => {
    const t = Date.now();
    // The database host shuts down first and is powered on 30 s after the others rebooted, and its
    // PostgreSQL answers DB_LATE_MS later still (a long crash recovery). Meanwhile a Booster's start
    // fails at once (connection refused), every 5 s or so: a start limit (the units had 10 in
    // 120 s) gives up on it for good. The services must keep trying and find the database by themselves.
    await c.db.must('systemctl disable postgresql');
    await c.db.shutdown();
    const others = Promise.all([...c.boosters, ...c.agents, c.client].map((h) => h.reboot({ waitRunning: false })));
    await sleep(30_000);
    await c.db.boot();
    await others;
    await sleep(DB_LATE_MS);
    await c.db.must('systemctl enable --now postgresql');
    await c.waitHealthy(3, 300_000);
    // A Booster still starting already answers on its port: every unit running is the operator's check.
    await c.waitServicesRunning();
    figure(S, `reboot of every host, PostgreSQL ${DB_LATE_MS / 1000} s after its host → every service running`, seconds(Date.now() - t));
    expect((await c.vipHolders()).length).toBe(1);
    await ticketsThroughVip(c, 'life-rebooted');
  });

  it('uninstall keeps configuration and data; --purge leaves nothing but the database', async () => {
    const tickets = Number((await c.knex()('tickets').count({ n: '*' }).first())?.n);
    await c.guide(c.agents[0]!, 'uninstall-agent', { input: 'y\n' });
    expect(await c.agents[0]!.must('ls /etc/omflow/ /var/lib/omflow/; test ! -e /opt/omflow/BoosterAgent && echo gone')).toMatch(
      /agent\.env[\s\S]*agent[\s\S]*gone/,
    );
    const purge = (h: Host) =>
      c.guide(h, 'uninstall-purge', { input: 'y\n', fill: { '/opt/omflow/Booster/': c.boosters.includes(h) ? '/opt/omflow/Booster/' : `${AGENT_HOME}/` } });
    for (const h of [...c.agents.slice(1), ...c.boosters]) await purge(h);
    for (const h of [...c.agents.slice(1), ...c.boosters]) {
      const left = await h.sh(
        'ls -d /opt/omflow /etc/omflow /var/lib/omflow /var/log/omflow /etc/systemd/system/omflow-* 2>/dev/null; id omflow 2>/dev/null; pgrep -u omflow; ip -o -4 addr show dev host0 | grep -c " inet " ',
      );
      expect(left.stdout.trim(), h.name).toBe('1');
    }
    expect(Number((await c.knex()('tickets').count({ n: '*' }).first())?.n)).toBe(tickets);
  });
});
