import { type ChildProcess, spawn } from 'node:child_process';
import type { Logger } from './log.js';

/**
 * The sd_notify protocol for a process run by systemd with `Type=notify` (docs/adr/0016):
 * READY=1, STATUS=, STOPPING=1, EXTEND_TIMEOUT_USEC= and the watchdog ping. Node cannot open
 * the AF_UNIX datagram socket itself, so one long-lived `perl` child (perl-base is Essential on
 * Debian and Ubuntu) sends each line it reads on stdin as a datagram to $NOTIFY_SOCKET. Because
 * it stays alive while it sends, systemd can always find its cgroup (NotifyAccess=all), which a
 * short-lived `systemd-notify` child does not guarantee on systemd < 254.
 * Without NOTIFY_SOCKET (not under systemd, tests, the pid-file scripts) every call is a no-op.
 */
export interface ServiceNotifier {
  /** Whether systemd listens (NOTIFY_SOCKET was set). */
  readonly active: boolean;
  /** READY=1: the service is up (port listening, role known); starts the watchdog pings. */
  ready(status: string): void;
  /** STATUS=…: one line for `systemctl status`, sent only when it changed. */
  status(text: string): void;
  /** Keeps STATUS= following `describe()` (read each `intervalMs`) until stopping. */
  follow(describe: () => string, intervalMs?: number): void;
  /** STOPPING=1, and room for the graceful stop the process is about to do. */
  stopping(budgetMs?: number): void;
  /** Ends the pings and the notifier child. Idempotent. */
  close(): void;
}

/** Environment variables systemd sets for the service itself; its children must not inherit them. */
export const SERVICE_MANAGER_VARS = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;

/** `env` without the service manager's variables (for the processes a service starts). */
export function withoutServiceManagerVars<T extends Record<string, string | undefined>>(env: T): T {
  const copy = { ...env };
  for (const k of SERVICE_MANAGER_VARS) delete copy[k];
  return copy;
}

// Reads one message per line (fields separated by tabs), sends each as one datagram.
const NOTIFIER = [
  'use strict; use Socket;',
  'my $p = $ENV{NOTIFY_SOCKET}; $p =~ s/^@/\\0/;',
  'socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or die "socket: $!\\n";',
  'my $to = pack_sockaddr_un($p);',
  'while (my $l = <STDIN>) { chomp $l; $l =~ s/\\t/\\n/g; send($s, $l, 0, $to) or warn "sd_notify: $!\\n"; }',
].join(' ');

export interface NotifierOptions {
  env: Record<string, string | undefined>;
  log: Logger;
  /** This process's pid (WATCHDOG_PID names the process the pings must come from). */
  pid?: number;
  /** The notifier program; tests point it elsewhere. */
  perl?: string;
}

export function createServiceNotifier(opts: NotifierOptions): ServiceNotifier {
  const { env, log } = opts;
  const socket = env.NOTIFY_SOCKET;
  if (!socket) return { active: false, ready() {}, status() {}, follow() {}, stopping() {}, close() {} };

  const pid = opts.pid ?? process.pid;
  const watchdogUs = Number(env.WATCHDOG_USEC);
  const watchdogForUs = Number.isFinite(watchdogUs) && watchdogUs > 0 && (!env.WATCHDOG_PID || Number(env.WATCHDOG_PID) === pid);
  let child: ChildProcess | null = null;
  let closed = false;
  let lastStatus = '';
  let pings: NodeJS.Timeout | null = null;
  let following: NodeJS.Timeout | null = null;
  const stopTimers = () => {
    for (const t of [pings, following]) if (t) clearInterval(t);
    pings = following = null;
  };

  const start = () => {
    const c = spawn(opts.perl ?? 'perl', ['-e', NOTIFIER], {
      env: { NOTIFY_SOCKET: socket, PATH: env.PATH ?? '/usr/bin:/bin' },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    c.on('error', (err) => log.error({ err }, 'cannot notify systemd: perl is needed for Type=notify (install perl-base, or use a Type=exec unit)'));
    c.stderr?.on('data', (d: Buffer) => log.warn({ stderr: d.toString().trim() }, 'sd_notify helper'));
    c.stdin?.on('error', () => {});
    c.once('exit', (code, signal) => {
      if (child === c) child = null;
      if (!closed) log.warn({ code, signal }, 'the sd_notify helper exited; starting another');
    });
    // Neither the child nor its pipe may keep this process alive once the service is done.
    c.unref();
    (c.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    return c;
  };

  const send = (...fields: string[]) => {
    if (closed) return;
    child ??= start();
    child.stdin?.write(`${fields.map((f) => f.replace(/[\t\n]/g, ' ')).join('\t')}\n`);
  };
  const status = (text: string) => {
    if (text === lastStatus) return;
    lastStatus = text;
    send(`STATUS=${text}`);
  };

  return {
    active: true,
    ready(text) {
      lastStatus = text;
      send('READY=1', `STATUS=${text}`);
      // A ping each third of the interval, from this event loop: a loop stuck for the whole
      // interval (a busy loop, a deadlock in native code) stops the pings and systemd restarts us.
      if (watchdogForUs && !pings) {
        pings = setInterval(() => send('WATCHDOG=1'), Math.max(100, Math.floor(watchdogUs / 3000)));
        pings.unref();
      }
    },
    status,
    follow(describe, intervalMs = 1000) {
      if (following) clearInterval(following);
      following = setInterval(() => status(describe()), intervalMs);
      following.unref();
    },
    stopping(budgetMs) {
      stopTimers();
      send('STOPPING=1', ...(budgetMs ? [`EXTEND_TIMEOUT_USEC=${Math.ceil(budgetMs) * 1000}`] : []), 'STATUS=stopping');
    },
    close() {
      if (closed) return;
      closed = true;
      stopTimers();
      child?.stdin?.end();
      child = null;
    },
  };
}
