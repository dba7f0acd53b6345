/**
 * Day-two operations (--full), on one installed cluster (the Booster pair, two app servers), run
 * as an operator runs them on the hosts: the installed `omflow` CLI with the operator guide's
 * token files, `omflow config check` (a broken copy exits 78, and `systemctl reload` refuses it
 * while the service runs on), `systemctl reload` turning the access log on under ticket load, the
 * server commands with a write token, `omflow switchover` under load, maintenance mode through the
 * VIP, and the Prometheus scrape with the read token.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ADMIN, LabCluster, labDir, longestGap, releaseIn } from './cluster.js';
import { figure, seconds } from './figures.js';
import { guideBlock } from './guide.js';
import type { Host } from './hosts.js';
import { bootAndInstall, ticketsThroughVip } from './scenarios.js';

const skip = inject('labSkip') || (inject('full') ? '' : 'the full lab only (npm run test:lab -- --full)');
const S = 'day-two';
const OMFLOW = '/opt/omflow/Booster/bin/omflow';
const ENV = '/etc/omflow/booster.env';

interface BoosterStatus {
  role: string;
  epoch: number;
  nodeId: string;
  servers: Array<{ id: string; draining: boolean; weight: number; state: string }>;
  maintenance: { on: boolean; message: string | null } | null;
}

describe.skipIf(skip !== '')(`day two: config check, reload, server commands, switchover, maintenance, metrics${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let c: LabCluster;

  beforeAll(() => {
    c = new LabCluster({ rootfs: inject('rootfs'), dir: labDir(), release: releaseIn(inject('releaseDir')), agents: 2 });
  });
  afterAll(async () => {
    await c?.destroy();
  });

  /** systemd's view of a Booster's service: state, main pid, restarts. */
  const unitState = async (b: Host) => {
    const show = await b.must('systemctl show omflow-booster -p ActiveState -p MainPID -p NRestarts');
    return Object.fromEntries(
      show
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
  };
  /** `omflow status --json` on a Booster host (signed with the host's cluster secret). */
  const status = async (b: Host): Promise<BoosterStatus> => JSON.parse(await b.must(`${OMFLOW} status --json --booster ${c.boosterUrl(b)}`)) as BoosterStatus;
  /** An operator command as alice, with the guide's environment (her write token, the VIP). */
  const asAlice = (host: Host, cmd: string) => host.sh(`set -eo pipefail\n${guideBlock('operator-env', c.vars)}\n${cmd}`);
  const journalCount = async (b: Host, pattern: string) =>
    Number((await b.sh(`journalctl -u omflow-booster -o cat --no-pager | grep -c -F '${pattern}'`)).stdout.trim() || 0);

  it('installs the database, the Booster pair and two app servers with the guide commands', async () => {
    await bootAndInstall(c, S);
  });

  it('the operator tokens as the guide sets them (one file copied to both Boosters), applied with systemctl reload', async () => {
    const [b1, b2] = c.boosters;
    await c.guide(b1, 'operator-token');
    await c.guide(b1, 'operator-write-tokens');
    for (const f of ['operator-token', 'operator-write-tokens']) {
      const content = await b1.must(`cat /etc/omflow/${f}`);
      await b2.must(`umask 077 && cat > /etc/omflow/${f}`, { input: content });
    }
    for (const b of c.boosters) {
      const before = await unitState(b);
      const reloads = await journalCount(b, 'configuration reloaded');
      await c.guide(b, 'operator-token-config');
      await c.guide(b, 'operator-write-tokens-config');
      await c.waitFor(`${b.name} reloaded twice`, async () => (await journalCount(b, 'configuration reloaded')) >= reloads + 2, 30_000);
      expect(await unitState(b)).toEqual({ ...before });
      // What the running service now says about its configuration file.
      expect((await b.sh(`${OMFLOW} config check --quiet`)).code, `${b.name} config check`).toBe(0);
    }
    const token = (await b1.must('cat /etc/omflow/operator-token')).trim();
    const code = (path: string, auth: boolean) =>
      c.client.must(`curl -s -o /dev/null -w '%{http_code}' ${auth ? `-H "Authorization: Bearer ${token}"` : ''} ${c.boosterUrl(b1)}${path}`);
    expect(await code('/_booster/status', false)).toBe('401');
    expect(await code('/_booster/status', true)).toBe('200');
  });

  it('omflow config check: exit 0 on the installed file, 78 on a broken copy; systemctl reload refuses the broken file and the service runs on', async () => {
    const b = (await c.active())!;
    const good = await b.sh(`${OMFLOW} config check`);
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.stdout).toMatch(/^OK: \/etc\/omflow\/booster\.env/m);
    expect(good.stdout).toMatch(/ok +database: reachable and migrated/);

    // The operator edits a copy and checks it before putting it in place.
    await b.must(`cp -p ${ENV} /root/booster.env.good && cp ${ENV} /root/booster.env && echo 'OMFLOW_BOOSTER_QUEUE_SIZE=lots' >> /root/booster.env`);
    const bad = await b.sh(`${OMFLOW} --config /root/booster.env config check --role booster`);
    expect(bad.code, bad.stdout + bad.stderr).toBe(78);
    expect(bad.stdout + bad.stderr).toContain('OMFLOW_BOOSTER_QUEUE_SIZE');

    // Put in place anyway: the unit's reload checks first, refuses, and the Booster runs on.
    const before = await unitState(b);
    const epoch = (await status(b)).epoch;
    await b.must(`cat /root/booster.env > ${ENV}`);
    const reload = await b.sh('systemctl reload omflow-booster');
    expect(reload.code).not.toBe(0);
    expect(await unitState(b)).toEqual(before);
    expect(before.ActiveState).toBe('active');
    const after = await status(b);
    expect({ role: after.role, epoch: after.epoch }).toEqual({ role: 'active', epoch });
    expect(await b.must('journalctl -u omflow-booster -o cat --no-pager -n 50')).toContain('OMFLOW_BOOSTER_QUEUE_SIZE');
    await b.must(`cat /root/booster.env.good > ${ENV} && systemctl reload omflow-booster`);
    expect(await unitState(b)).toEqual(before);
    await ticketsThroughVip(c, 'day2-after-refused');
  });

  it('systemctl reload with the access log turned on, under ticket load: no failed request, no takeover, the lines in the journal', async () => {
    const active = (await c.active())!;
    const before = await status(active);
    const units = await Promise.all(c.boosters.map(unitState));
    const load = c.startLoad('day2-reload');
    await load.ready;
    await c.waitFor('tickets flowing', async () => load.acks.length >= 20, 60_000);
    const t = Date.now();
    try {
      for (const b of c.boosters) {
        const reloads = await journalCount(b, 'configuration reloaded');
        await b.must(`echo 'OMFLOW_BOOSTER_ACCESS_LOG=json' >> ${ENV} && systemctl reload omflow-booster`);
        await c.waitFor(`${b.name} reloaded`, async () => (await journalCount(b, 'configuration reloaded')) > reloads, 30_000);
      }
      await c.waitFor('tickets after the reloads', async () => load.acks.filter((a) => a.at > t).length >= 40, 60_000);
    } finally {
      await load.stop();
    }
    const after = await status(active);
    expect({ role: after.role, epoch: after.epoch }).toEqual({ role: 'active', epoch: before.epoch });
    expect(await c.roles()).toMatchObject({ [active.name]: 'active' });
    expect(await Promise.all(c.boosters.map(unitState))).toEqual(units);
    expect(await active.must('journalctl -u omflow-booster -o cat --no-pager | grep -F "configuration reloaded" | tail -1')).toContain(
      'OMFLOW_BOOSTER_ACCESS_LOG',
    );
    // The access log: one JSON line per ticket request, in the journal.
    const lines = (
      await active.must(`journalctl -u omflow-booster -o cat --no-pager | grep -F '"msg":"access"' | grep -F '/api/forms/it-request/tickets' || true`)
    )
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { method: string; status: number; server: string; epoch: number; traceId: string });
    expect(lines.length).toBeGreaterThan(10);
    expect(lines.at(-1)).toMatchObject({ method: 'POST', epoch: before.epoch });
    expect([200, 201]).toContain(lines.at(-1)!.status);
    expect(lines.at(-1)!.traceId).toMatch(/^[0-9a-f]{32}$/);
    const v = await c.verify(load.acks, 'day2-reload');
    figure(
      S,
      'reload (access log on) under load: tickets / failed',
      `${load.acks.length + load.errors.length} / ${load.errors.length} (first tries failed ${load.firstFailures.length}, same epoch ${after.epoch})`,
    );
    expect(v).toMatchObject({ lost: 0, duplicated: 0, stepsNotOnce: 0 });
    expect(load.errors).toEqual([]);
    expect(load.firstFailures).toEqual([]);
  });

  it('omflow server drain|undrain|weight with a write token: the read token is refused, the drained server gets no new request', async () => {
    const active = (await c.active())!;
    const other = c.boosters.find((b) => b !== active)!;
    const ids = (await status(active)).servers.map((s) => s.id).sort();
    expect(ids.length).toBe(2);
    const [drained, kept] = ids as [string, string];

    // The read-only token opens status and metrics, never a command.
    const ro = await other.sh(`OMFLOW_OPERATOR_TOKEN_FILE=/etc/omflow/operator-token ${OMFLOW} server drain ${drained} --booster ${c.vipUrl}; echo "exit $?"`);
    expect(ro.stdout + ro.stderr).toContain('COMMON_ERR_OPERATOR_SCOPE');
    expect(ro.stdout).toContain('exit 1');

    const accessLines = async (server: string) => journalCount(active, `"server":"${server}"`);
    const drain = await asAlice(other, `${OMFLOW} server drain ${drained} --reason "kernel update"`);
    expect(drain.code, drain.stderr).toBe(0);
    expect(drain.stdout).toContain(`${drained} is draining`);
    await c.waitFor(`${drained} draining on both Boosters`, async () => {
      for (const b of c.boosters) if (!(await status(b)).servers.find((s) => s.id === drained)?.draining) return false;
      return true;
    });
    const drainedBefore = await accessLines(drained);
    const keptBefore = await accessLines(kept);
    await ticketsThroughVip(c, 'day2-drained', 6);
    expect(await accessLines(drained)).toBe(drainedBefore);
    expect(await accessLines(kept)).toBeGreaterThan(keptBefore);

    const weight = await asAlice(other, `${OMFLOW} server weight ${kept} 50`);
    expect(weight.code, weight.stderr).toBe(0);
    const zero = await asAlice(other, `${OMFLOW} server weight ${kept} 0`);
    expect(zero.code).not.toBe(0);
    const undrain = await asAlice(other, `${OMFLOW} server undrain ${drained}`);
    expect(undrain.code, undrain.stderr).toBe(0);
    await c.waitFor('the weight and the undrain on the active', async () => {
      const s = (await status(active)).servers;
      return s.find((x) => x.id === kept)?.weight === 50 && s.find((x) => x.id === drained)?.draining === false;
    });
    expect((await asAlice(other, `${OMFLOW} server weight ${kept} 100`)).code).toBe(0);
    await c.waitFor(`${drained} serving again`, async () => {
      const before = await accessLines(drained);
      await ticketsThroughVip(c, `day2-undrained-${Date.now()}`, 4);
      return (await accessLines(drained)) > before;
    });
    // The event log names alice's token for each command.
    const events = JSON.stringify(await c.knex()('booster_events').select('kind', 'subject', 'details'));
    expect(events.match(/operator:alice/g)?.length ?? 0).toBeGreaterThanOrEqual(4);
  });

  it('omflow switchover under ticket load: the standby becomes active at the next epoch, the VIP moves, no ticket lost, doubled or failed', async () => {
    const old = (await c.active())!;
    const other = c.boosters.find((b) => b !== old)!;
    await c.waitFor(`${other.name} standby`, async () => (await c.roles())[other.name] === 'standby', 60_000);
    const epoch = (await status(old)).epoch;
    const load = c.startLoad('day2-switchover');
    await load.ready;
    await c.waitFor('tickets flowing', async () => load.acks.length >= 20, 60_000);
    const t = Date.now();
    let printed = '';
    let activeMs = Number.NaN;
    try {
      // To the active's own address, as the guide says: the VIP leaves this host during the hand-over.
      const r = await asAlice(old, `${OMFLOW} switchover --booster http://127.0.0.1:5169`);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      printed = r.stdout.trim();
      await c.waitFor(`${other.name} active`, async () => (await c.roles())[other.name] === 'active', 30_000, 100);
      activeMs = Date.now() - t;
      await c.waitFor('the VIP on the new active', async () => (await c.vipHolders()).join() === other.name, 30_000, 100);
      await c.waitFor('tickets after the switchover', async () => load.acks.filter((a) => a.at > t + 1000).length >= 20, 60_000);
    } finally {
      await load.stop();
    }
    const m = /switchover: (\S+) → (\S+), epoch (\d+) → (\d+), handed over in (\d+) ms/.exec(printed);
    expect(m, printed).not.toBeNull();
    expect(Number(m![3])).toBe(epoch);
    expect(Number(m![4])).toBe(epoch + 1);
    expect((await status(other)).epoch).toBe(epoch + 1);
    await c.waitFor(`${old.name} standby`, async () => (await c.roles())[old.name] === 'standby', 60_000);
    expect(await c.vipHolders()).toEqual([other.name]);
    expect((await unitState(old)).NRestarts).toBe('0');
    const gapMs = longestGap(load.acks, t - 1000);
    const v = await c.verify(load.acks, 'day2-switchover');
    figure(
      S,
      'switchover: handed over (CLI) / new active / client gap',
      `${m![5]} ms / ${seconds(activeMs)} / ${seconds(gapMs)} (acked ${v.acked}, first tries failed ${load.firstFailures.length}, failed ${load.errors.length})`,
    );
    expect(v).toMatchObject({ lost: 0, duplicated: 0, stepsNotOnce: 0 });
    expect(load.errors, JSON.stringify(load.errors.slice(0, 5))).toEqual([]);
  });

  it('omflow maintenance on --message: users get the page or 503 with Retry-After through the VIP, login and admin still work; off ends it', async () => {
    const host = c.boosters[0];
    const message = 'Upgrade to 2.0 until 22:00';
    const on = await asAlice(host, `${OMFLOW} maintenance on --message "${message}" --retry-after 1800`);
    expect(on.code, on.stderr).toBe(0);
    const curl = (args: string) => c.client.must(`curl -s -i ${args}`);
    const api = await c.waitFor(
      'the VIP answering maintenance',
      async () => {
        const r = await curl(`-H 'Accept: application/json' ${c.vipUrl}/api/forms`);
        return r.startsWith('HTTP/1.1 503') ? r : null;
      },
      10_000,
      100,
    );
    expect(api).toMatch(/^retry-after: 1800\r?$/im);
    expect(api).toContain('BOOSTER_ERR_MAINTENANCE');
    expect(api).toContain(message);
    const page = await curl(`-H 'Accept: text/html' -H 'Accept-Language: ja,en;q=0.5' ${c.vipUrl}/`);
    expect(page).toMatch(/^HTTP\/1\.1 503/);
    expect(page).toContain('メンテナンス中');
    expect(page).toContain(message);
    // Both Boosters honour it (the standby answers as a standby only to the VIP's health checks).
    await c.waitFor('maintenance on at both Boosters', async () => {
      for (const b of c.boosters) if (!(await status(b)).maintenance?.on) return false;
      return true;
    });
    // The login page, the login itself and the admin pages go on.
    expect(await c.client.must(`curl -s -o /dev/null -w '%{http_code}' ${c.vipUrl}/login`)).toBe('200');
    const admin = await c.client.must(
      `rm -f /root/jar && curl -s -o /dev/null -c /root/jar --data-urlencode username=${ADMIN.user} --data-urlencode password=${ADMIN.password} ${c.vipUrl}/login && curl -s -o /dev/null -w '%{http_code}' -b /root/jar ${c.vipUrl}/admin/cluster`,
    );
    expect(admin).toBe('200');
    const st = await asAlice(host, `${OMFLOW} maintenance status`);
    expect(st.stdout, `exit ${st.code}: ${st.stderr}`).toContain(message);
    expect(st.stdout).toContain('operator:alice');

    const t = Date.now();
    const off = await asAlice(host, `${OMFLOW} maintenance off`);
    expect(off.code, off.stderr).toBe(0);
    await c.waitFor(
      'the VIP serving users again',
      async () => !(await curl(`-H 'Accept: application/json' ${c.vipUrl}/api/forms`)).startsWith('HTTP/1.1 503'),
      10_000,
      100,
    );
    figure(S, 'maintenance off → users served again through the VIP', seconds(Date.now() - t));
    await ticketsThroughVip(c, 'day2-after-maintenance');
    await c.waitFor('maintenance off at both Boosters', async () => {
      for (const b of c.boosters) if ((await status(b)).maintenance?.on) return false;
      return true;
    });
  });

  it('Prometheus scrapes /_booster/metrics of both Boosters with the read token; without it 401', async () => {
    const token = (await c.boosters[0].must('cat /etc/omflow/operator-token')).trim();
    const roles = await c.roles();
    for (const b of c.boosters) {
      const url = `${c.boosterUrl(b)}/_booster/metrics`;
      expect(await c.client.must(`curl -s -o /dev/null -w '%{http_code}' ${url}`)).toBe('401');
      const t = Date.now();
      const text = await c.client.must(`curl -sf -H "Authorization: Bearer ${token}" ${url}`);
      const ms = Date.now() - t;
      const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      expect(value('omflow_booster_active'), b.name).toBe(roles[b.name] === 'active' ? 1 : 0);
      expect(value('omflow_booster_epoch'), b.name).toBe(roles[b.name] === 'active' ? (await status(b)).epoch : 0);
      if (roles[b.name] === 'active') {
        // The active proxied the lab's tickets, and knows the trial's end.
        expect(text).toMatch(/^omflow_booster_requests_total\{/m);
        expect(value('omflow_license_expiry_seconds')).toBeGreaterThan(0);
      }
      const series = text.split('\n').filter((l) => l && !l.startsWith('#')).length;
      figure(S, `metrics scrape of ${b.name} (${roles[b.name]})`, `${series} series, ${(text.length / 1024).toFixed(1)} KiB in ${ms} ms`);
    }
  });
});
