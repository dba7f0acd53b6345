/**
 * The smoke scenario (CI runs it on every submission): fresh Debian 12 hosts under a real
 * systemd, the packages from `npm run package` installed with the operator guide's commands in
 * the start order (database, Boosters, app servers), a ticket raised from the client host
 * through the VIP, and a kill -9 of the active Booster under ticket load.
 */
import { mkdtempSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LabCluster, releaseIn } from './cluster.js';
import { bootAndInstall, checkSystemdView, killTakeover, ticketsThroughVip } from './scenarios.js';

const skip = inject('labSkip');

describe.skipIf(skip !== '')(`smoke: install, start order, a ticket through the VIP, kill -9 takeover${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let c: LabCluster;

  beforeAll(() => {
    c = new LabCluster({ rootfs: inject('rootfs'), dir: mkdtempSync('/var/tmp/omflow-lab-'), release: releaseIn(inject('releaseDir')), agents: 3 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('installs the database, the Booster pair and three app servers with the guide commands, in the start order', async () => {
    await bootAndInstall(c, 'smoke');
    await checkSystemdView(c, 'smoke');
    expect(await c.guide(c.boosters[0], 'status')).toMatch(/active/);
  });

  it('a ticket raised on the client host through the VIP is kept once and its automatic steps run once', async () => {
    await ticketsThroughVip(c, 'smoke-one');
  });

  it('kill -9 of the active Booster: the standby takes the VIP, no ticket lost or doubled, the old active returns as standby', async () => {
    await killTakeover(c, 'smoke', 'smoke-kill');
    expect(await c.guide(c.boosters[1], 'drill-check')).toContain('"active":true');
  });
});
