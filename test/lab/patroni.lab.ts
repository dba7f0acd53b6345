/**
 * The database tier as the guide recommends it (--full): PostgreSQL on two hosts under Debian's
 * Patroni with three etcd members, the Boosters and the app server on the multi-host URL. A
 * switchover and a power cut of the primary's host under ticket load: no acknowledged ticket lost
 * or doubled, and the Boosters keep their roles (the database moving is not a Booster failover).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { LabCluster, labDir, longestGap, releaseIn } from './cluster.js';
import { figure, seconds } from './figures.js';
import type { Host } from './hosts.js';
import { bootAndInstall, ticketsThroughVip } from './scenarios.js';

const skip = inject('labSkip') || (inject('full') ? '' : 'the full lab only (npm run test:lab -- --full)');
const S = 'patroni';

describe.skipIf(skip !== '')(`Patroni database tier: switchover and a primary host crash under load${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let c: LabCluster;

  beforeAll(() => {
    c = new LabCluster({
      rootfs: inject('rootfs'),
      dir: labDir(),
      release: releaseIn(inject('releaseDir')),
      agents: 1,
      database: 'patroni',
    });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  /** Ticket load through the VIP while `move` moves the primary; the Boosters' roles sampled throughout. */
  async function underLoad(label: string, move: () => Promise<void>, newLeader: string) {
    const activeBefore = (await c.active())!.name;
    const seen = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const a = await c.active().catch(() => null);
        if (a) seen.add(a.name);
        await sleep(500);
      }
    })();
    const load = c.startLoad(label);
    await load.ready;
    await c.waitFor('tickets flowing', async () => load.acks.length >= 20, 60_000);
    const t = Date.now();
    try {
      await move();
      await c.waitFor(`${newLeader} leading`, async () => (await c.patroniMembers())[newLeader]?.role === 'Leader', 180_000, 500);
      await c.waitFor('tickets acknowledged on the new primary', async () => load.acks.filter((a) => a.at > Date.now() - 3000).length >= 20, 120_000);
    } finally {
      await load.stop();
      sampling = false;
      await sampler;
    }
    const v = await c.verify(load.acks, label);
    const gap = longestGap(load.acks, t - 1000);
    expect(v).toMatchObject({ lost: 0, duplicated: 0, stepsNotOnce: 0 });
    expect([...seen]).toEqual([activeBefore]);
    return { gap, acked: v.acked, errors: load.errors.length };
  }

  it('installs etcd, Patroni (synchronous), the Booster pair and an app server on the multi-host URL', async () => {
    await bootAndInstall(c, S);
    expect(await c.boosters[0].must('cat /etc/omflow/booster.env')).toContain('db1:5432,db2:5432');
    await ticketsThroughVip(c, 'pat-first');
  });

  it('patronictl switchover under ticket load: nothing lost or doubled, no Booster takeover', async () => {
    const r = await underLoad('pat-switch', () => c.guide(c.db, 'patroni-switchover').then(() => {}), 'db2');
    figure(S, 'switchover db1 → db2: longest client gap', `${seconds(r.gap)} (acked ${r.acked}, errors after retry ${r.errors})`);
    await c.waitFor('db1 a synchronous standby again', async () => /Sync Standby/.test((await c.patroniMembers()).db1?.role ?? ''), 180_000);
  });

  it('power cut of the primary host (db2) under ticket load: Patroni promotes db1; nothing lost or doubled, no Booster takeover; db2 rejoins as a replica', async () => {
    const primary = c.db2 as Host;
    const r = await underLoad('pat-crash', () => primary.powerCut(), 'db1');
    figure(S, 'primary host power cut: longest client gap', `${seconds(r.gap)} (acked ${r.acked}, errors after retry ${r.errors})`);
    await primary.boot();
    await c.waitFor('db2 back as a replica', async () => /Replica|Sync Standby/.test((await c.patroniMembers()).db2?.role ?? ''), 300_000);
    await ticketsThroughVip(c, 'pat-after');
  });
});
