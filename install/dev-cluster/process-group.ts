import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { groupAlive } from '../../common/process-group.js';
import { lifelineSpawn } from '../../common/supervisor-lifeline.js';

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
  opts: { env: Record<string, string | undefined>; cwd: string; logFile: string; lifeline?: boolean },
): ManagedProcess {
  const fd = openSync(opts.logFile, 'a');
  let done = false;
  // An omflow child holds the dev CLI's lifeline (ADR 0022): if the CLI dies, even by SIGKILL, the child stops itself.
  const io = opts.lifeline ? lifelineSpawn(['ignore', fd, fd] as const, opts.env) : { stdio: ['ignore', fd, fd] as const, env: opts.env };
  const child = spawn(command, args, { cwd: opts.cwd, env: io.env as NodeJS.ProcessEnv, detached: true, stdio: [...io.stdio] });
  closeSync(fd);
  (child.stdio[3] as Socket | null | undefined)?.unref();
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

export interface StrayProcess {
  pid: number;
  cmd: string;
}

/**
 * Live processes (zombies aside) whose command line names a path under `dir`: an app server runs
 * a release from the cluster's node directories, PostgreSQL its data directory. This is what
 * "nothing left running" is checked against, whichever group a process ended up in.
 */
export function processesUnder(dir: string): StrayProcess[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const out: StrayProcess[] = [];
  // This CLI and what started it (npm start -- --dir …) name the directory too.
  const ancestors = new Set<number>();
  for (let pid = process.pid; pid > 1 && !ancestors.has(pid); pid = parentOf(pid)) ancestors.add(pid);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || ancestors.has(Number(entry))) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (args.some((a) => a === dir || a.startsWith(prefix) || a.includes(`=${prefix}`))) out.push({ pid: Number(entry), cmd: args.join(' ') });
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return out;
}

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** SIGTERM to each process processesUnder(dir) finds, SIGKILL to those still there after graceMs. Returns what it found. */
export async function stopProcessesUnder(dir: string, graceMs: number): Promise<StrayProcess[]> {
  const found = processesUnder(dir);
  const signal = (sig: NodeJS.Signals) => {
    for (const p of found) {
      try {
        process.kill(p.pid, sig);
      } catch {
        // Already gone.
      }
    }
  };
  if (found.length === 0) return found;
  signal('SIGTERM');
  const pids = new Set(found.map((p) => p.pid));
  const alive = () => processesUnder(dir).some((p) => pids.has(p.pid));
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await sleep(100);
  if (alive()) signal('SIGKILL');
  for (let i = 0; i < 50 && alive(); i++) await sleep(100);
  return found;
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
