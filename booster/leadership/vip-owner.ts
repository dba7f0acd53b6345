import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../common/log.js';

/**
 * The virtual IP owned through the leader lease (like Pacemaker's IPaddr2, fenced by our epoch):
 * the address is added only after the lease with epoch N is held, and removed on step-down,
 * which happens before the lease can lapse, so two boosters that both see the database never
 * carry it at once. Uses `ip` (CAP_NET_ADMIN) and iputils `arping` (CAP_NET_RAW).
 */

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs one command; injected so a unit test can check the sequence without touching interfaces. */
export type CommandRunner = (cmd: string, args: readonly string[], signal?: AbortSignal) => Promise<CommandResult>;

export const runCommand: CommandRunner = (cmd, args, signal) =>
  new Promise((resolve) => {
    execFile(cmd, args, { timeout: 10_000, signal, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && code === -1 ? String(err.message) : '') });
    });
  });

export interface VipOptions {
  /** IPv4 address with prefix, e.g. 10.0.0.10/24. */
  address: string;
  iface: string;
  arpCount: number;
  arpIntervalMs?: number;
  log: Logger;
  run?: CommandRunner;
}

export interface VipOwner {
  /** At start, while not active: removes the address if a previous process left it behind. */
  removeStale(): Promise<void>;
  /** Adds the address for lease epoch `epoch`, then announces it. Resolves once added. */
  claim(epoch: number): Promise<void>;
  /** Stops any announcement and removes the address. Resolves once it is gone. */
  release(): Promise<void>;
  /** Epoch the address is held for, or null. */
  heldEpoch(): number | null;
}

export function createVipOwner(opts: VipOptions): VipOwner {
  const run = opts.run ?? runCommand;
  const { address, iface, log } = opts;
  const ip = address.split('/')[0]!;
  const interval = opts.arpIntervalMs ?? 200;
  /** Epoch we should hold the address for (null: none); ops check it when they run. */
  let wanted: number | null = null;
  let held: number | null = null;
  let announcing: AbortController | null = null;
  // add/del run one at a time, in call order: a release always follows a claim's add.
  let queue: Promise<void> = Promise.resolve();
  const enqueue = (op: () => Promise<void>) => (queue = queue.then(op, op));

  async function present(): Promise<boolean> {
    const r = await run('ip', ['-o', '-4', 'addr', 'show', 'dev', iface]);
    return r.code === 0 && r.stdout.split('\n').some((l) => l.includes(` inet ${ip}/`));
  }

  async function remove(why: string): Promise<void> {
    announcing?.abort();
    announcing = null;
    const r = await run('ip', ['-4', 'addr', 'del', address, 'dev', iface]);
    // `del` fails when the address is absent; only an address still there is an error.
    if (r.code !== 0 && (await present())) {
      log.error({ vip: address, iface, stderr: r.stderr.trim() }, 'could not remove the virtual IP: remove it by hand before the other booster takes over');
      return;
    }
    if (r.code === 0) log.info({ vip: address, iface, epoch: held, why }, 'virtual IP removed');
    held = null;
  }

  function announce(epoch: number): void {
    const ctl = new AbortController();
    announcing = ctl;
    // -U: unsolicited ARP, so neighbours replace the old owner's MAC in their caches at once.
    // One arping per packet (iputils takes whole seconds as interval, and lingers a second after
    // its packet); a release aborts them, so we never announce an address we gave up.
    void (async () => {
      for (let i = 0; i < opts.arpCount; i++) {
        if (i > 0) await sleep(interval, undefined, { signal: ctl.signal }).catch(() => {});
        if (ctl.signal.aborted || held !== epoch) return;
        void run('arping', ['-q', '-U', '-c', '1', '-I', iface, ip], ctl.signal).then((r) => {
          if (r.code !== 0 && !ctl.signal.aborted)
            log.warn({ vip: address, iface, code: r.code, stderr: r.stderr.trim() }, 'gratuitous ARP for the virtual IP failed (needs CAP_NET_RAW)');
        });
      }
    })();
  }

  return {
    removeStale: () =>
      enqueue(async () => {
        if (wanted !== null) return;
        if (await present()) {
          log.warn({ vip: address, iface }, 'removing a virtual IP left on this host while not active');
          await remove('stale at start');
        }
      }),
    claim(epoch) {
      wanted = epoch;
      return enqueue(async () => {
        if (wanted !== epoch) return; // stepped down before the add ran
        const r = await run('ip', ['-4', 'addr', 'replace', address, 'dev', iface]);
        if (r.code !== 0) {
          log.error({ vip: address, iface, epoch, stderr: r.stderr.trim() }, 'could not add the virtual IP (needs CAP_NET_ADMIN)');
          return;
        }
        held = epoch;
        log.info({ vip: address, iface, epoch }, 'virtual IP added');
        announce(epoch);
      });
    },
    release() {
      wanted = null;
      announcing?.abort();
      return enqueue(async () => {
        if (wanted !== null) return; // claimed again meanwhile
        await remove('step-down');
      });
    },
    heldEpoch: () => held,
  };
}
