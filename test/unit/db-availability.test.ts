import { describe, expect, it } from 'vitest';
import { DatabaseAvailabilityMonitor } from '../../common/db/availability.js';
import { CommonErrors } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { waitFor } from '../helpers/poll.js';

/** The monitor's rules with a scripted probe (the integration tests run it against PostgreSQL). */
function setup(opts: { noAnswerMs?: number; graceMs?: number } = {}) {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  const log = {
    warn: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'warn', obj, msg }),
    info: (obj: Record<string, unknown>, msg: string) => lines.push({ level: 'info', obj, msg }),
  } as unknown as Logger;
  const script = { answers: true, probes: 0 };
  const changes: [boolean, number | undefined][] = [];
  const m = new DatabaseAvailabilityMonitor({
    log,
    graceMs: opts.graceMs ?? 10_000,
    noAnswerMs: opts.noAnswerMs ?? 100,
    probeIntervalMs: 20,
    probeTimeoutMs: 200,
    probe: async () => {
      script.probes++;
      if (!script.answers) throw new Error('ECONNREFUSED');
    },
  });
  m.onChange((up, downMs) => changes.push([up, downMs]));
  return { m, lines, script, changes };
}

const noAnswer = () => Promise.reject(CommonErrors.COMMON_ERR_DB_CONNECTION());

describe('database availability monitor', () => {
  it('one failed query whose probe answers is not an outage', async () => {
    const { m, lines, script, changes } = setup();
    await m.track(noAnswer()).catch(() => {});
    await waitFor(() => script.probes >= 1, { what: 'a probe', timeoutMs: 2000, intervalMs: 10 });
    await new Promise((r) => setTimeout(r, 50));
    expect(m.isUp()).toBe(true);
    expect(lines).toEqual([]);
    expect(changes).toEqual([]);
    m.stop();
  });

  it('a SQL-level error is an answer: no probe at all', async () => {
    const { m, script } = setup();
    await m.track(Promise.reject(CommonErrors.COMMON_ERR_DB_UNIQUE())).catch(() => {});
    await new Promise((r) => setTimeout(r, 50));
    expect(script.probes).toBe(0);
    expect(m.isUp()).toBe(true);
    m.stop();
  });

  it('failures with failing probes: one WARN, down since the first failure, one INFO with downMs when back', async () => {
    const { m, lines, script, changes } = setup({ graceMs: 150 });
    script.answers = false;
    await m.track(noAnswer()).catch(() => {});
    await waitFor(() => !m.isUp(), { what: 'unreachable', timeoutMs: 2000, intervalMs: 10 });
    for (let i = 0; i < 5; i++) await m.track(noAnswer()).catch(() => {});
    expect(m.withinGrace()).toBe(true);
    await waitFor(() => !m.withinGrace(), { what: 'past the grace', timeoutMs: 2000, intervalMs: 10 });
    expect(m.downForMs()).toBeGreaterThanOrEqual(150);
    script.answers = true;
    await waitFor(() => m.isUp(), { what: 'reachable again', timeoutMs: 2000, intervalMs: 10 });
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ['warn', 'database unreachable'],
      ['info', 'database reachable again'],
    ]);
    expect(lines[1].obj.downMs as number).toBeGreaterThanOrEqual(150);
    expect(changes.map(([up]) => up)).toEqual([false, true]);
    expect(m.downSince()).toBeNull();
    m.stop();
  });

  it('a query that hangs past noAnswerMs makes it probe; a failing probe means unreachable while the query still hangs', async () => {
    const { m, script } = setup({ noAnswerMs: 60 });
    script.answers = false;
    let release: () => void = () => {};
    const hanging = m.track(new Promise<void>((r) => (release = r)));
    await waitFor(() => !m.isUp(), { what: 'unreachable during the hang', timeoutMs: 2000, intervalMs: 10 });
    script.answers = true;
    release();
    await hanging;
    expect(m.isUp()).toBe(true);
    m.stop();
  });
});
