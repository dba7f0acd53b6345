import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createServiceNotifier, withoutServiceManagerVars } from '../../common/systemd-notify.js';

// systemd's side of the protocol: a datagram socket that prints each message it receives on one
// line (fields separated by tabs). Node cannot bind one, hence perl here as in the helper.
const RECEIVER = [
  'use strict; use Socket; $| = 1;',
  'socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or die; unlink $ARGV[0];',
  'bind($s, pack_sockaddr_un($ARGV[0])) or die "bind: $!"; print "bound\\n";',
  'while (defined(recv($s, my $m, 4096, 0))) { $m =~ s/\\n/\\t/g; print "$m\\n"; }',
].join(' ');

const silent = pino({ level: 'silent' });
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function receiver(): Promise<{ socket: string; messages: string[]; next: (pred: (m: string) => boolean) => Promise<string> }> {
  const dir = mkdtempSync(join(tmpdir(), 'omflow-notify-'));
  const socket = join(dir, 'notify');
  const child: ChildProcess = spawn('perl', ['-e', RECEIVER, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  cleanups.push(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const messages: string[] = [];
  const waiters: { pred: (m: string) => boolean; resolve: (m: string) => void }[] = [];
  let buf = '';
  let bound: () => void;
  const isBound = new Promise<void>((r) => (bound = r));
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line === 'bound') bound();
      else {
        messages.push(line);
        for (const w of waiters.splice(0))
          if (w.pred(line)) w.resolve(line);
          else waiters.push(w);
      }
    }
  });
  await isBound;
  return {
    socket,
    messages,
    next: (pred) => {
      const seen = messages.find(pred);
      return seen !== undefined ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ pred, resolve }));
    },
  };
}

describe('sd_notify from Node (the perl notifier)', () => {
  it('sends READY with a status, watchdog pings while the loop turns, then STOPPING with room for the stop', async () => {
    const r = await receiver();
    const n = createServiceNotifier({
      env: { NOTIFY_SOCKET: r.socket, WATCHDOG_USEC: '300000', WATCHDOG_PID: String(process.pid), PATH: process.env.PATH },
      log: silent,
    });
    cleanups.push(() => n.close());
    expect(n.active).toBe(true);
    n.ready('active, epoch 3');
    expect(await r.next((m) => m.startsWith('READY=1'))).toBe('READY=1\tSTATUS=active, epoch 3');
    await r.next((m) => m === 'WATCHDOG=1');
    n.status('active, epoch 3'); // unchanged: not sent again
    n.status('standby');
    await r.next((m) => m === 'STATUS=standby');
    n.stopping(45_500);
    expect(await r.next((m) => m.startsWith('STOPPING=1'))).toBe('STOPPING=1\tEXTEND_TIMEOUT_USEC=45500000\tSTATUS=stopping');
    expect(r.messages.filter((m) => m.startsWith('STATUS=')).length).toBe(1);
  });

  it('does not ping for another process (WATCHDOG_PID) and is a no-op without NOTIFY_SOCKET', async () => {
    const r = await receiver();
    const n = createServiceNotifier({ env: { NOTIFY_SOCKET: r.socket, WATCHDOG_USEC: '150000', WATCHDOG_PID: '1', PATH: process.env.PATH }, log: silent });
    cleanups.push(() => n.close());
    n.ready('up');
    await r.next((m) => m.startsWith('READY=1'));
    n.status('marker');
    await r.next((m) => m === 'STATUS=marker');
    expect(r.messages).not.toContain('WATCHDOG=1');
    const off = createServiceNotifier({ env: {}, log: silent });
    expect(off.active).toBe(false);
    off.ready('x');
    off.close();
  });

  it('children of a service do not inherit its NOTIFY_SOCKET or watchdog', () => {
    expect(withoutServiceManagerVars({ NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '1', WATCHDOG_PID: '2', PATH: '/bin' })).toEqual({ PATH: '/bin' });
  });
});
