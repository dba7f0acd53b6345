import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { groupAlive } from '../../common/process-group.js';

/**
 * A child process in its own process group, its output appended to a log file. Killing the
 * group (negative pid) reaches everything the child started (an agent's app server too), and
 * a terminal's Ctrl-C reaches only the dev CLI, which then stops the groups in order.
 */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal) when the group leader exits. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
}

export function spawnGroup(
  name: string,
  command: string,
  args: string[],
  opts: { env: Record<string, string | undefined>; cwd: string; logFile: string },
): ManagedProcess {
  const fd = openSync(opts.logFile, 'a');
  let done = false;
  const child = spawn(command, args, { cwd: opts.cwd, env: opts.env as NodeJS.ProcessEnv, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
    child.once('error', () => {
      done = true;
      resolve({ code: 127, signal: null });
    });
  });
  if (child.pid === undefined) throw new Error(`cannot start ${name}: ${command}`);
  return { name, pid: child.pid, logFile: opts.logFile, child, exited, hasExited: () => done };
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // Already gone.
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * SIGTERM to the whole group, then SIGKILL after graceMs. Returns true when nothing of the
 * group is left (bounded wait).
 */
export async function stopGroup(pgid: number, graceMs = 10_000): Promise<boolean> {
  if (!groupAlive(pgid)) return true;
  signalGroup(pgid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(50);
  if (!groupAlive(pgid)) return true;
  signalGroup(pgid, 'SIGKILL');
  for (let i = 0; i < 100 && groupAlive(pgid); i++) await sleep(50);
  return !groupAlive(pgid);
}

/** Last lines of a log file, for error messages. */
export function tailOf(file: string, lines = 20): string {
  try {
    const size = statSync(file).size;
    const text = readFileSync(file, 'utf8').slice(Math.max(0, size - 16_000));
    return text
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch {
    return '';
  }
}
