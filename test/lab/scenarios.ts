/**
 * Scenario steps shared by the lab's files: each asserts what an operator would check (service
 * status exit codes, roles, where the VIP is, every acknowledged ticket once with its automatic
 * steps run once) and prints its figures.
 */
import { expect } from 'vitest';
import { type LabCluster, longestGap } from './cluster.js';
import { figure, seconds } from './figures.js';
import type { Host } from './hosts.js';

export interface InstallFigures {
  bootMs: number;
  installMs: number;
}

/** Boots the hosts, then installs database → Boosters → app servers with the guide's commands. */
export async function bootAndInstall(c: LabCluster, scenario: string, opts: { beforeBoosters?: () => Promise<void> } = {}): Promise<InstallFigures> {
  const t0 = Date.now();
  await c.boot();
  const bootMs = Date.now() - t0;
  figure(scenario, `boot ${c.hosts.length} hosts (systemd-nspawn -b)`, seconds(bootMs));
  const t = Date.now();
  await c.setupDatabase();
  await opts.beforeBoosters?.();
  await c.installBoosters();
  // install.sh returns once each service answers: the first is active, the second standby.
  for (const b of c.boosters) expect(await c.serviceStatus(b), `${b.name} status`).toBe(0);
  expect(await c.roles()).toEqual({ 'booster-1': 'active', 'booster-2': 'standby' });
  expect(await c.vipHolders()).toEqual(['booster-1']);
  await c.installAgents();
  for (const a of c.agents) expect(await c.serviceStatus(a), `${a.name} status`).toBe(0);
  await c.waitHealthy(c.agents.length);
  const installMs = Date.now() - t;
  figure(scenario, `fresh package → pair + ${c.agents.length} servers up (install.sh × ${2 + c.agents.length})`, seconds(installMs));
  return { bootMs, installMs };
}

/** systemd's view of the services: ready with a status, not restarted, the watchdog armed. */
export async function checkSystemdView(c: LabCluster, scenario: string): Promise<void> {
  for (const b of c.boosters) {
    const show = await b.must('systemctl show omflow-booster -p Type -p ActiveState -p StatusText -p WatchdogUSec -p NRestarts');
    expect(show).toContain('Type=notify');
    expect(show).toContain('ActiveState=active');
    expect(show).toContain('WatchdogUSec=30s');
    expect(show).toMatch(/StatusText=(active, epoch \d+|standby)/);
    expect(show).toContain('NRestarts=0');
  }
  for (const a of c.agents) {
    const show = await a.must('systemctl show omflow-booster-agent -p Type -p ActiveState -p StatusText -p NRestarts');
    expect(show).toMatch(/StatusText=app server running/);
    expect(show).toContain('NRestarts=0');
  }
  // systemctl reload (config check, then SIGHUP) keeps both running: each reads its file again and logs it.
  for (const [unit, host] of [
    ['omflow-booster', c.boosters[0]],
    ['omflow-booster-agent', c.agents[0]!],
  ] as const) {
    const reloads = async () => Number((await host.sh(`journalctl -u ${unit} -o cat --no-pager | grep -c 'configuration reloaded'`)).stdout.trim() || 0);
    const before = await reloads();
    await host.must(`systemctl reload ${unit}`);
    await c.waitFor(`${unit} logged the reload`, async () => (await reloads()) > before, 10_000);
    const show = await host.must(`systemctl show ${unit} -p ActiveState -p NRestarts`);
    expect(show).toContain('ActiveState=active');
    expect(show).toContain('NRestarts=0');
  }
  for (const [unit, host] of [
    ['omflow-booster', c.boosters[0]],
    ['omflow-booster-agent', c.agents[0]!],
  ] as const) {
    const sec = await host.sh(`systemd-analyze security ${unit} --no-pager | tail -1`);
    figure(scenario, `systemd-analyze security ${unit}`, sec.stdout.trim().replace(/^→ Overall exposure level for \S+: /, ''));
  }
}

/** A few tickets from the client host through the VIP: each kept once, its automatic steps run once. */
export async function ticketsThroughVip(c: LabCluster, label: string, count = 3): Promise<void> {
  const load = c.startLoad(label, { workers: 1, count });
  await load.ready;
  await c.waitFor(`${count} tickets`, async () => load.acks.length + load.errors.length >= count, 60_000);
  await load.stop();
  expect(load.errors).toEqual([]);
  expect(await c.verify(load.acks, label)).toEqual({ acked: count, lost: 0, duplicated: 0, stepsNotOnce: 0 });
}

export interface FailoverResult {
  /** The Booster that failed (active before). */
  old: Host;
  /** Longest pause between two acknowledged tickets around the failure (the client's view). */
  gapMs: number;
  /** Failure → the other Booster answers as active (polled every 100 ms from the lab machine). */
  takeoverMs: number;
  acked: number;
  errors: number;
}

/**
 * Connection errors a client may meet twice in a row when the active's host dies: requests in
 * flight on it are lost (reset, or a timeout when the host vanished), and the dead host may reset
 * new connections until its address is gone. A planned failover allows none.
 */
export const CRASH_ERRORS = /^(ECONNRESET|ECONNREFUSED|UND_ERR_SOCKET|TimeoutError|AbortError|EHOSTUNREACH)\b/;

/**
 * One failover of the active Booster under ticket load through the VIP: `fail` breaks it, `heal`
 * (if any) repairs it. Asserts: the other Booster becomes active and alone carries the VIP, the
 * old one comes back as standby, nothing acknowledged is lost or doubled, no ticket failed after
 * the client's one retry (with `crash`: none but the connection errors of a dying host).
 */
export async function failover(
  c: LabCluster,
  label: string,
  fail: (active: Host) => Promise<void>,
  heal: (old: Host) => Promise<void> = async () => {},
  opts: { crash?: boolean } = {},
): Promise<FailoverResult> {
  const old = await c.waitFor('an active Booster', () => c.active(), 60_000);
  const other = c.boosters.find((b) => b !== old)!;
  await c.waitFor(`${other.name} standby`, async () => (await c.roles())[other.name] === 'standby', 60_000);
  const load = c.startLoad(label);
  await load.ready;
  await c.waitFor('tickets flowing', async () => load.acks.length >= 20, 60_000);
  const failedAt = Date.now();
  let takeoverMs = Number.NaN;
  try {
    await fail(old);
    await c.waitFor(`${other.name} active`, async () => (await c.roles())[other.name] === 'active', 60_000, 100);
    takeoverMs = Date.now() - failedAt;
    await c.waitFor('tickets acknowledged after the takeover', async () => load.acks.filter((a) => a.at > failedAt + 500).length >= 20, 60_000);
  } finally {
    await load.stop();
  }
  const gapMs = longestGap(load.acks, failedAt - 1000);
  await heal(old);
  await c.waitFor(`${old.name} back as standby`, async () => (await c.roles())[old.name] === 'standby' && (await c.serviceStatus(old)) === 0, 180_000);
  expect(await c.vipHolders()).toEqual([other.name]);
  const v = await c.verify(load.acks, label);
  expect(v).toMatchObject({ lost: 0, duplicated: 0, stepsNotOnce: 0 });
  const unexpected = load.errors.filter((e) => !(opts.crash && CRASH_ERRORS.test(e.why)));
  expect(unexpected, JSON.stringify(unexpected.slice(0, 5))).toEqual([]);
  return { old, gapMs, takeoverMs, acked: v.acked, errors: load.errors.length };
}

/** The smoke scenario's kill -9 of the active Booster (the guide's drill), with systemd's restart. */
export async function killTakeover(c: LabCluster, scenario: string, label: string): Promise<FailoverResult> {
  const r = await failover(c, label, (active) => c.guide(active, 'drill-kill').then(() => {}), undefined, { crash: true });
  // systemd restarted it (Restart=on-failure); it found the lease taken and reports standby.
  const show = await r.old.must('systemctl show omflow-booster -p NRestarts -p StatusText');
  expect(show).toMatch(/NRestarts=[1-9]/);
  expect(show).toContain('StatusText=standby');
  figure(
    scenario,
    'kill -9: new active / longest client gap',
    `${seconds(r.takeoverMs)} / ${seconds(r.gapMs)} (acked ${r.acked}, errors after retry ${r.errors})`,
  );
  return r;
}
