import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CommandRunner, createVipOwner } from '../../../booster/leadership/vip-owner.js';
import { boosterArea } from '../../../common/config/areas/booster.js';
import { loadConfig } from '../../../common/config/load.js';
import { parseDatabaseUrl } from '../../../common/db/url.js';
import type { OmflowError } from '../../../common/errors.js';
import { seed } from '../../../server/seed.js';
import { createTestDatabase, type TestDatabase } from '../../helpers/db.js';
import { netnsUnavailable } from '../../helpers/netns.js';
import { LOGIN, longestPause, startVipCluster, VIP, type VipCluster, waitUntil } from '../../helpers/vip-cluster.js';
import { SECRET, silentLog } from '../fixtures.js';

describe('VIP configuration', () => {
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig([boosterArea], { env });
      return [];
    } catch (err) {
      expect((err as OmflowError).code).toBe('COMMON_ERR_CONFIG_INVALID');
      return ((err as OmflowError).details as { problems: { key: string }[] }).problems.map((p) => p.key);
    }
  };
  it('needs an IPv4 address with prefix and an interface, together', () => {
    expect(problems({ OMFLOW_BOOSTER_VIP: '10.0.0.10/24', OMFLOW_BOOSTER_VIP_INTERFACE: 'eth0' })).toEqual([]);
    expect(problems({ OMFLOW_BOOSTER_VIP: '10.0.0.10/24' })).toEqual(['OMFLOW_BOOSTER_VIP_INTERFACE']);
    expect(problems({ OMFLOW_BOOSTER_VIP: '10.0.0.10', OMFLOW_BOOSTER_VIP_INTERFACE: 'eth0' })).toEqual(['OMFLOW_BOOSTER_VIP']);
  });
  it('a postgres URL with ?host=/dir reaches the unix socket in that directory (every network namespace sees it)', () => {
    const r = parseDatabaseUrl('postgres://u:p@localhost:5433/omflow?host=%2Ftmp');
    expect(r.ok && r.value.host).toBe('/tmp');
    expect(r.ok && r.value.port).toBe(5433);
  });
});

describe('VIP owner: the command sequence', () => {
  function recorder(present: () => boolean) {
    const calls: string[] = [];
    const run: CommandRunner = async (cmd, args, signal) => {
      const line = [cmd, ...args].join(' ');
      calls.push(line);
      if (cmd === 'ip' && args.includes('show')) return { code: 0, stdout: present() ? `2: eth0    inet 10.0.0.10/24 scope global eth0\n` : '', stderr: '' };
      if (cmd === 'arping') {
        // arping lingers after its packets; the owner aborts it on release.
        await new Promise<void>((r) => signal?.addEventListener('abort', () => r(), { once: true }));
        calls.push('arping aborted');
      }
      return { code: 0, stdout: '', stderr: '' };
    };
    return { calls, run };
  }

  it('claim adds the address, then announces it; release stops the announcement before removing it', async () => {
    const { calls, run } = recorder(() => false);
    const vip = createVipOwner({ address: '10.0.0.10/24', iface: 'eth0', arpCount: 3, log: silentLog, run });
    await vip.claim(7);
    expect(vip.heldEpoch()).toBe(7);
    expect(calls).toEqual(['ip -4 addr replace 10.0.0.10/24 dev eth0', 'arping -q -U -c 1 -I eth0 10.0.0.10']);
    await vip.release();
    expect(vip.heldEpoch()).toBeNull();
    expect(calls.slice(2)).toEqual(['arping aborted', 'ip -4 addr del 10.0.0.10/24 dev eth0']);
  });

  it('a release that arrives while the add is running removes the address after it; a claim dropped before it ran never adds', async () => {
    const { calls, run } = recorder(() => false);
    const vip = createVipOwner({ address: '10.0.0.10/24', iface: 'eth0', arpCount: 1, log: silentLog, run });
    const claimed = vip.claim(3);
    const released = vip.release();
    await Promise.all([claimed, released]);
    // The claim was overtaken before its add ran: nothing added, the delete still runs (idempotent).
    expect(calls).toEqual(['ip -4 addr del 10.0.0.10/24 dev eth0']);
    expect(vip.heldEpoch()).toBeNull();
  });

  it('at start a stale address is removed only when found', async () => {
    let present = true;
    const { calls, run } = recorder(() => present);
    const vip = createVipOwner({ address: '10.0.0.10/24', iface: 'eth0', arpCount: 1, log: silentLog, run });
    await vip.removeStale();
    expect(calls).toEqual(['ip -o -4 addr show dev eth0', 'ip -4 addr del 10.0.0.10/24 dev eth0']);
    present = false;
    calls.length = 0;
    await vip.removeStale();
    expect(calls).toEqual(['ip -o -4 addr show dev eth0']);
  });
});

const unavailable = netnsUnavailable();

/**
 * Boosters, an app server and a client each in their own network namespace on a private bridge
 * (10.213.0.0/24, only inside namespaces this test creates); the database over its unix socket.
 */
describe.skipIf(!!unavailable)(`VIP through the lease, in network namespaces${unavailable ? ` (skipped: ${unavailable})` : ''}`, () => {
  let tdb: TestDatabase;
  let cluster: VipCluster | undefined;
  const vipCidr = `${VIP}/24`;

  beforeAll(async () => {
    tdb = await createTestDatabase('postgres', { migrate: true });
    await seed(tdb.db, { adminUser: LOGIN.user, adminPassword: LOGIN.password, demo: true });
    cluster = await startVipCluster({ dbUrl: tdb.url, knex: tdb.knex, secret: SECRET });
  }, 180_000);
  afterAll(async () => {
    await cluster?.destroy();
    await tdb?.drop();
  });

  it('the active carries the VIP on its interface, the standby does not', async () => {
    const c = cluster!;
    await waitUntil(() => c.lab.addresses('a').includes(vipCidr), 'VIP on a', 10_000);
    expect(c.lab.addresses('b')).not.toContain(vipCidr);
    // Both run as the unit with the VIP drop-in runs them: uid 65534, CAP_NET_ADMIN + CAP_NET_RAW only.
    for (const p of c.boosters) {
      const st = readFileSync(`/proc/${p!.child.pid}/status`, 'utf8');
      expect(/^Uid:\s+(\d+)/m.exec(st)?.[1]).toBe('65534');
      expect(/^CapEff:\s+(\w+)/m.exec(st)?.[1]).toBe('0000000000003000');
    }
  });

  const names = ['a', 'b'];
  /** The lease holder, once it carries the VIP. */
  async function activeWithVip(c: VipCluster): Promise<number> {
    return waitUntil(
      async () => {
        const i = await c.activeIndex();
        return i >= 0 && c.lab.addresses(names[i]!).includes(vipCidr) ? i + 1 : 0;
      },
      'an active booster carrying the VIP',
      30_000,
    ).then((n) => n - 1);
  }

  it('kill -9 of the active under a client raising tickets through the VIP: the standby takes the address, no acknowledged ticket is lost, the restarted booster drops its stale copy', async () => {
    const c = cluster!;
    const client = await c.startClient();
    try {
      await waitUntil(() => client.outcome.acks.length >= 20, 'tickets through the VIP before the kill', 60_000);
      const dead = await activeWithVip(c);
      const other = 1 - dead;
      const killedAt = Date.now();
      await c.kill9(dead);
      // The dead process cannot remove the address: it stays in its namespace until it restarts
      // (systemd's ExecStopPost removes it on a real host).
      const stale = c.lab.addresses(names[dead]!).includes(vipCidr);
      await waitUntil(
        async () => (await c.activeIndex()) === other && c.lab.addresses(names[other]!).includes(vipCidr),
        'the other booster holds the lease and the VIP',
        30_000,
      );
      await waitUntil(() => client.outcome.acks.filter((a) => a.at > killedAt).length >= 5, 'tickets through the VIP after the takeover', 60_000);
      const gap = longestPause(client.outcome.acks, killedAt - 1000, Date.now());
      console.log(
        `VIP failover after kill -9: client-visible gap ${gap} ms, ${client.outcome.failed} tickets failed after one retry, ${client.outcome.retried} retried`,
      );
      expect(gap).not.toBeNull();

      // Restarted (as systemd would), it comes up as standby and removes the address it finds.
      c.startBooster(dead);
      await waitUntil(() => /booster listening/.test(c.boosters[dead]!.output()), 'killed booster restarted', 60_000, 50);
      if (stale) expect(c.boosters[dead]!.output()).toContain('removing a virtual IP left on this host while not active');
      const now = await activeWithVip(c);
      expect(c.lab.addresses(names[1 - now]!)).not.toContain(vipCidr);
    } finally {
      await client.stop();
    }
    const acked = client.outcome.acks.map((a) => a.key);
    const stored = new Set((await tdb.knex('tickets').whereIn('title', acked).select('title')).map((r) => r.title as string));
    expect(acked.filter((k) => !stored.has(k))).toEqual([]);
    const dup = await tdb.knex('tickets').select('title').count({ n: '*' }).groupBy('title').havingRaw('count(*) > 1');
    expect(dup).toEqual([]);
  }, 240_000);

  it('an active frozen past its lease steps down when it wakes and removes the VIP; the other takes it', async () => {
    const c = cluster!;
    const frozen = await activeWithVip(c);
    const pid = c.boosters[frozen]!.child.pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      await waitUntil(
        async () => (await c.activeIndex()) === 1 - frozen && c.lab.addresses(names[1 - frozen]!).includes(vipCidr),
        'the other takes over from the frozen active',
        30_000,
      );
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // While both carry the address for a moment, only the new owner has announced it.
    await waitUntil(
      () => /stepping down to standby/.test(c.boosters[frozen]!.output()) && !c.lab.addresses(names[frozen]!).includes(vipCidr),
      'the woken booster stepped down and removed the VIP',
      30_000,
    );
    const now = await activeWithVip(c);
    expect(c.lab.addresses(names[1 - now]!)).not.toContain(vipCidr);
  }, 90_000);

  it('SIGTERM of the active removes the VIP before it hands the lease over; the standby takes it', async () => {
    const c = cluster!;
    const stopping = await activeWithVip(c);
    const p = c.boosters[stopping]!;
    p.child.kill('SIGTERM');
    await p.exited;
    expect(p.child.exitCode).toBe(0);
    expect(c.lab.addresses(names[stopping]!)).not.toContain(vipCidr);
    expect(p.output()).toContain('virtual IP removed');
    await waitUntil(
      async () => (await c.activeIndex()) === 1 - stopping && c.lab.addresses(names[1 - stopping]!).includes(vipCidr),
      'the standby takes over after the release',
      30_000,
    );
  }, 90_000);
});
