import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { groupAlive } from '../../common/process-group.js';
import { probePair } from '../../install/dev-cluster/cluster-probe.js';
import { waitFor } from '../helpers/poll.js';
import { freePortRun, OMFLOW_BIN, type RunningProcess, startOmflow, stopAll } from '../helpers/processes.js';
import { cleanEnv, processesMentioning, raiseTicket, runScript } from './helpers.js';

// `npm start` = `omflow dev`: the whole cluster on one machine, then a clean stop.
describe('omflow dev (npm start)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'omflow-dev-test-'));
  let dev: RunningProcess | undefined;
  let groups: number[] = [];

  afterAll(async () => {
    await stopAll();
    for (const g of groups) if (groupAlive(g)) process.kill(-g, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('reaches "ready" with two boosters (one active) and the servers up, serves a ticket, and SIGTERM leaves nothing running', async () => {
    // omflow dev takes --port and the next one (the second booster).
    const port = await freePortRun(2);
    const password = 'Dev-test-pw-42';
    dev = startOmflow('omflow dev', ['dev', '--servers', '2', '--port', String(port), '--dir', dir, '--admin-password', password], {
      OMFLOW_LOG_LEVEL: 'info',
    });
    await waitFor(() => dev!.child.exitCode !== null || dev!.output().includes('is ready'), {
      timeoutMs: 150_000,
      intervalMs: 250,
      what: `"ready" from omflow dev`,
    });
    expect(dev.child.exitCode, dev.output()).toBeNull();
    groups = JSON.parse(readFileSync(join(dir, 'pids.json'), 'utf8')) as number[];
    expect(groups.length).toBe(2 + 2 + 1); // agents, boosters, postgres
    const out = dev.output();
    expect(out).toContain(`http://127.0.0.1:${port}/`);
    expect(out).toContain(`admin / ${password}`);
    expect(out).toMatch(/Ctrl-C/);

    const urls = [`http://127.0.0.1:${port}`, `http://127.0.0.1:${port + 1}`];
    // GET /_booster/status wants credentials: the session secret, which the dev cluster keeps in its dir.
    const session = readFileSync(join(dir, 'cluster-secret'), 'utf8').trim();
    expect((await probePair(urls, 'not-the-session-secret')).serversUp).toEqual([]);
    const view = await probePair(urls, session);
    expect(view.roles).toEqual({ [urls[0]]: 'active', [urls[1]]: 'standby' });
    expect(view.serversUp.sort()).toEqual(['server-1', 'server-2']);

    const ticket = await raiseTicket(urls[0], 'admin', password);
    expect(ticket.status, JSON.stringify(ticket.body)).toBe(201);

    process.kill(dev.pid, 'SIGTERM');
    const code = await Promise.race([dev.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 120_000))]);
    expect(code, dev.output()).toBe(0);
    expect(dev.output()).toContain('nothing left running');
    for (const g of groups) expect(groupAlive(g), `process group ${g}`).toBe(false);
    expect(processesMentioning(dir)).toEqual([]);
    expect(existsSync(join(dir, 'pids.json'))).toBe(false);
  }, 300_000);

  it('refuses bad options before starting anything (exit 2)', async () => {
    for (const [args, message] of [
      [['--servers', '0'], '--servers must be an integer from 1 to 32'],
      [['--db', 'sqlite:///tmp/x.db'], 'SQLite is refused'],
      [['--bogus'], 'unknown option --bogus'],
    ] as const) {
      const r = await runScript(process.execPath, [OMFLOW_BIN, 'dev', ...args, '--dir', join(dir, 'never')], { env: cleanEnv() });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(message);
    }
    expect(existsSync(join(dir, 'never'))).toBe(false);
    const help = await runScript(process.execPath, [OMFLOW_BIN, 'dev', '--help'], { env: cleanEnv() });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--servers N');
  });
});
