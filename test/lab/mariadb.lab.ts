/**
 * The smoke scenario's variant (--full): MariaDB as the database, and Debian's other arping
 * (Thomas Habets', the `arping` package, swapped in for iputils-arping) on both Booster hosts.
 */
import { mkdtempSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LabCluster, releaseIn } from './cluster.js';
import { bootAndInstall, checkSystemdView, killTakeover, ticketsThroughVip } from './scenarios.js';

const skip = inject('labSkip') || (inject('full') ? '' : 'the full lab only (npm run test:lab -- --full)');

describe.skipIf(skip !== '')(`MariaDB and Habets' arping: install, a ticket through the VIP, kill -9 takeover${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let c: LabCluster;

  beforeAll(() => {
    c = new LabCluster({
      rootfs: inject('rootfs'),
      dir: mkdtempSync('/var/tmp/omflow-lab-'),
      release: releaseIn(inject('releaseDir')),
      agents: 2,
      database: 'mariadb',
    });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  it('installs on MariaDB with the arping package on the Booster hosts', async () => {
    await bootAndInstall(c, 'mariadb+habets', {
      // Offline, from the rootfs's apt cache: the arping package replaces iputils-arping.
      beforeBoosters: async () => {
        for (const b of c.boosters) {
          await b.must('apt-get install -y -qq --no-download arping >/dev/null 2>&1 && dpkg -s arping | grep -q "Status: install ok installed"');
          expect(await b.must('arping -V 2>&1 || true')).toContain('Habets');
        }
      },
    });
    await checkSystemdView(c, 'mariadb+habets');
    expect(await c.boosters[0].must('cat /etc/omflow/booster.env')).toContain('OMFLOW_DB_URL=mysql://');
  });

  it('a ticket raised on the client host through the VIP is kept once and its automatic steps run once', async () => {
    await ticketsThroughVip(c, 'maria-one');
  });

  it("kill -9 of the active Booster: Habets' gratuitous ARP moves the client to the new owner; nothing lost or doubled", async () => {
    await killTakeover(c, 'mariadb+habets', 'maria-kill');
    // The client host learnt the new owner's MAC for the VIP.
    const mac = (await c.boosters[1].must('cat /sys/class/net/host0/address')).trim();
    expect(await c.client.must(`ip neigh show ${c.vip}`)).toContain(mac);
  });
});
