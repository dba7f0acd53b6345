import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export { freePort, freePortRun } from '../../common/free-port.js';

export const OMFLOW_BIN = fileURLToPath(new URL('../../common/bin/omflow.mjs', import.meta.url));
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Runs `omflow <args>` to completion with only the given environment (plus PATH). */
export function runOmflow(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [OMFLOW_BIN, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

export interface RunningProcess {
  name: string;
  child: ChildProcess;
  pid: number;
  output(): string;
  /** SIGTERM to the process group, SIGKILL after `graceMs`; resolves when it exited. */
  stop(graceMs?: number): Promise<void>;
  /** kill -9 of the process alone (not its group), as a crash would. */
  kill9(): Promise<void>;
  exited: Promise<number | null>;
}

const running = new Set<RunningProcess>();

/** Starts `omflow <args>` as a child in its own process group. */
export function startOmflow(name: string, args: string[], env: Record<string, string | undefined>): RunningProcess {
  const child = spawn(process.execPath, [OMFLOW_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, OMFLOW_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  const keep = (d: Buffer) => {
    out += d.toString();
    if (out.length > 200_000) out = out.slice(-100_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const alive = () => child.exitCode === null && child.signalCode === null;
  const proc: RunningProcess = {
    name,
    child,
    pid: child.pid!,
    output: () => out,
    exited,
    async stop(graceMs = 10_000) {
      if (alive()) {
        try {
          process.kill(-child.pid!, 'SIGTERM');
        } catch {
          /* already gone */
        }
        const timer = setTimeout(() => {
          try {
            process.kill(-child.pid!, 'SIGKILL');
          } catch {
            /* already gone */
          }
        }, graceMs);
        await exited;
        clearTimeout(timer);
      }
      // Whatever the process left in its group goes too.
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* group empty */
      }
      running.delete(proc);
    },
    async kill9() {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
      await exited;
    },
  };
  running.add(proc);
  return proc;
}

/** For afterAll: stops every process still running from this file. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop(5_000)));
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * SIGKILL to every process whose command line mentions `dir`, and their pids. An app server runs
 * in its own process group (its agent's resource): when an agent is stopped before it stopped its
 * server (a short grace, a crash), the server must not outlive the test. Its command line names
 * its release below the test's work directory.
 */
export function killProcessesRunningFrom(dir: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(dir)) continue;
      process.kill(Number(name), 'SIGKILL');
      pids.push(Number(name));
    } catch {
      // Exited while we looked.
    }
  }
  return pids;
}
