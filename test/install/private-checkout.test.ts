import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { groupAlive } from '../../common/process-group.js';
import { SHARED_PG_ROOT } from '../../install/dev-cluster/embedded-db.js';
import { waitFor } from '../helpers/poll.js';
import { freePort, REPO_ROOT } from '../helpers/processes.js';
import { processesMentioning, raiseTicket } from './helpers.js';

const isRoot = process.getuid?.() === 0;

/** A copy of this checkout inside a 0700 directory, as root's home or `mktemp -d` is; node_modules hard-linked when the filesystem allows. */
function privateCheckout(): { top: string; repo: string } {
  const top = mkdtempSync(join(tmpdir(), 'omflow-private-'));
  const repo = join(top, 'checkout');
  for (const name of readdirSync(REPO_ROOT)) {
    if (['.git', '.omflow', 'node_modules', 'release', 'test-artifacts'].includes(name)) continue;
    cpSync(join(REPO_ROOT, name), join(repo, name), { recursive: true, verbatimSymlinks: true });
  }
  const linked = spawnSync('cp', ['-al', join(REPO_ROOT, 'node_modules'), join(repo, 'node_modules')], { stdio: 'ignore' });
  if (linked.status !== 0) cpSync(join(REPO_ROOT, 'node_modules'), join(repo, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  return { top, repo };
}

interface Run {
  pid: number;
  output(): string;
  exited: Promise<number | null>;
}

function npm(args: string[], cwd: string): Run {
  const child = spawn('npm', args, {
    cwd,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, OMFLOW_LOG_LEVEL: 'warn', CI: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return { pid: child.pid!, output: () => out, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
}

const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms))]);

// "First run anywhere": both README commands, from a checkout that the postgres user cannot enter.
describe.skipIf(!isRoot)('a checkout in a private (0700) directory, as root', () => {
  const { top, repo } = privateCheckout();
  const groups: number[] = [];

  afterAll(() => {
    for (const g of groups) if (groupAlive(g)) process.kill(-g, 'SIGKILL');
    rmSync(top, { recursive: true, force: true });
  });

  it('is private to root', () => {
    expect(statSync(top).mode & 0o077).toBe(0);
  });

  it('`npm test` runs (embedded PostgreSQL binaries and data where the postgres user reaches them)', async () => {
    const run = npm(['test', '--', 'test/unit/protocol.test.ts'], repo);
    groups.push(run.pid);
    const code = await within(run.exited, 240_000);
    expect(code, run.output()).toBe(0);
    expect(run.output()).toMatch(/Tests\s+.*\d+ passed/);
    expect(run.output()).not.toContain('EACCES');
    expect(readdirSync(SHARED_PG_ROOT).some((d) => d.startsWith('bin-'))).toBe(true);
  }, 300_000);

  it('`npm start` reaches ready, serves a ticket, and stops leaving nothing running', async () => {
    const port = await freePort();
    const password = 'Private-dir-pw-42';
    // The CLI's own deadline comes first, so a slow start fails with its diagnosis (and log tail), not ours.
    const run = npm(['start', '--', '--servers', '2', '--port', String(port), '--admin-password', password, '--timeout', '120'], repo);
    groups.push(run.pid);
    let exited = false;
    void run.exited.then(() => (exited = true));
    let dataDir: string | undefined;
    try {
      await waitFor(() => exited || run.output().includes('is ready'), {
        timeoutMs: 200_000,
        intervalMs: 250,
        what: '"ready" from npm start',
      }).catch((err: Error) => {
        throw new Error(`${err.message}; its output:\n${run.output()}`);
      });
      expect(run.output()).toContain('is ready');
      dataDir = /PostgreSQL keeps its files in (\S+)/.exec(run.output())?.[1];
      expect(dataDir, run.output()).toBeDefined();
      const ticket = await raiseTicket(`http://127.0.0.1:${port}`, 'admin', password);
      expect(ticket.status, JSON.stringify(ticket.body)).toBe(201);
    } finally {
      try {
        // What a terminal's Ctrl-C does: SIGINT to npm and the dev CLI.
        process.kill(-run.pid, 'SIGINT');
      } catch {
        /* gone */
      }
    }
    expect(await within(run.exited, 120_000), run.output()).not.toBe('timeout');
    expect(run.output()).toContain('nothing left running');
    expect(processesMentioning(repo)).toEqual([]);
    if (dataDir) {
      expect(processesMentioning(dataDir)).toEqual([]);
      rmSync(join(dataDir, '..'), { recursive: true, force: true });
      expect(existsSync(dataDir)).toBe(false);
    }
  }, 420_000);
});
