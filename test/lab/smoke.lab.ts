/**
 * The smoke scenario (CI runs it on every submission): fresh Debian 12 hosts under a real
 * systemd, the packages from `npm run package` installed with the operator guide's commands in
 * the start order (database, Boosters, app servers), a ticket raised from the client host
 * through the VIP, and a kill -9 of the active Booster under ticket load.
 */
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LabCluster, longestGap, releaseIn } from './cluster.js';
import { figure, seconds } from './figures.js';

const skip = inject('labSkip');

describe.skipIf(skip !== '')(`smoke: install, start order, a ticket through the VIP, kill -9 takeover${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let c: LabCluster;

  beforeAll(async () => {
    c = new LabCluster({ rootfs: inject('rootfs'), dir: mkdtempSync(join('/var/tmp', 'omflow-lab-')), release: releaseIn(inject('releaseDir')), agents: 3 });
    const t = Date.now();
    await c.boot();
    figure('smoke', `boot ${c.hosts.length} hosts (systemd-nspawn -b)`, seconds(Date.now() - t));
  });

  afterAll(async () => {
    await c?.destroy();
  });

  it('installs the database, the Booster pair and three app servers with the guide commands, in the start order', async () => {
    const t = Date.now();
    await c.setupDatabase();
    await c.installBoosters();
    // install.sh returns once each service answers: the first is active, the second standby.
    for (const b of c.boosters) expect(await c.serviceStatus(b), `${b.name} status`).toBe(0);
    expect(await c.roles()).toEqual({ 'booster-1': 'active', 'booster-2': 'standby' });
    expect(await c.vipHolders()).toEqual(['booster-1']);
    await c.installAgents();
    for (const a of c.agents) expect(await c.serviceStatus(a), `${a.name} status`).toBe(0);
    await c.waitHealthy(3);
    figure('smoke', 'fresh package → pair + 3 servers up (install.sh × 5)', seconds(Date.now() - t));

    // systemd's view: ready (Type=notify) with the role as status, the watchdog armed.
    for (const b of c.boosters) {
      const show = await b.must('systemctl show omflow-booster -p Type -p ActiveState -p StatusText -p WatchdogUSec -p NRestarts');
      expect(show).toContain('Type=notify');
      expect(show).toContain('ActiveState=active');
      expect(show).toMatch(/StatusText=(active|standby)/);
      expect(show).toContain('NRestarts=0');
    }
    const agent = await c.agents[0]!.must('systemctl show omflow-booster-agent -p Type -p ActiveState -p StatusText -p NRestarts');
    expect(agent).toMatch(/StatusText=app server running/);
    expect(agent).toContain('NRestarts=0');
    for (const [unit, host] of [
      ['omflow-booster', c.boosters[0]],
      ['omflow-booster-agent', c.agents[0]!],
    ] as const) {
      const sec = await host.sh(`systemd-analyze security ${unit} --no-pager | tail -1`);
      figure('smoke', `systemd-analyze security ${unit} (booted host)`, sec.stdout.trim().replace(/^→ Overall exposure level for \S+: /, ''));
    }
  });

  it('a ticket raised on the client host through the VIP is kept once and its automatic steps run once', async () => {
    const load = c.startLoad('smoke-one', { workers: 1, count: 3 });
    await load.ready;
    await c.waitFor('three tickets', async () => load.acks.length + load.errors.length >= 3, 60_000);
    await load.stop();
    expect(load.errors).toEqual([]);
    expect(await c.verify(load.acks, 'smoke-one')).toEqual({ acked: 3, lost: 0, duplicated: 0, stepsNotOnce: 0 });
  });

  it('kill -9 of the active Booster: the standby takes the VIP, no ticket lost or doubled, the old active returns as standby', async () => {
    const [b1, b2] = c.boosters;
    const load = c.startLoad('smoke-kill');
    await load.ready;
    await c.waitFor('tickets flowing', async () => load.acks.length >= 20, 60_000);
    const killedAt = Date.now();
    await c.guide(b1, 'drill-kill');
    await c.waitFor('booster-2 active', async () => (await c.roles())['booster-2'] === 'active', 30_000, 100);
    await c.waitFor('tickets acknowledged after the takeover', async () => load.acks.filter((a) => a.at > killedAt + 500).length >= 20, 60_000);
    await load.stop();
    const gap = longestGap(load.acks, killedAt - 1000);
    // systemd restarts the killed Booster (Restart=on-failure); it finds the lease taken: standby.
    await c.waitFor('booster-1 back as standby', async () => (await c.roles())['booster-1'] === 'standby' && (await c.serviceStatus(b1)) === 0, 60_000);
    const show = await b1.must('systemctl show omflow-booster -p NRestarts -p StatusText');
    expect(show).toContain('NRestarts=1');
    expect(show).toContain('StatusText=standby');
    expect(await c.vipHolders()).toEqual([b2.name]);
    const v = await c.verify(load.acks, 'smoke-kill');
    figure('smoke', 'kill -9 takeover: longest client gap', `${seconds(gap)} (acked ${v.acked}, errors after retry ${load.errors.length})`);
    expect(v).toMatchObject({ lost: 0, duplicated: 0, stepsNotOnce: 0 });
    expect(load.errors).toEqual([]);
    expect(await c.guide(b2, 'drill-check')).toContain('"active":true');
  });
});
