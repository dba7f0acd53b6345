// CPU-limited control groups for the benches: each app server in a group of its own whose CPU
// quota the bench sets and changes mid-run (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`). The bench
// creates the groups and removes them when it ends; without the cpu controller it refuses to run.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PERIOD_US = 100_000;

type Layout = { version: 2; root: string } | { version: 1; root: string };

/** Where the cpu controller is, or why it cannot be used. */
export function cpuControllerLayout(): Layout | { error: string } {
  if (process.getuid?.() !== 0) return { error: 'creating cgroups needs root' };
  // v1 (and hybrid hosts, where the v2 tree at /sys/fs/cgroup/unified has no controllers).
  if (existsSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us')) return { version: 1, root: '/sys/fs/cgroup/cpu' };
  const controllers = '/sys/fs/cgroup/cgroup.controllers';
  if (existsSync(controllers) && readFileSync(controllers, 'utf8').split(/\s+/).includes('cpu')) {
    // A group needs the controller enabled in its parent's subtree.
    try {
      writeFileSync('/sys/fs/cgroup/cgroup.subtree_control', '+cpu');
    } catch (err) {
      return { error: `cannot enable the cpu controller for child groups: ${(err as Error).message}` };
    }
    return { version: 2, root: '/sys/fs/cgroup' };
  }
  return { error: 'no cgroup cpu controller (neither v2 cpu.max nor v1 cpu.cfs_quota_us)' };
}

/** One group; `quota` is a share of one CPU (0.1 = 10 % of a core; Infinity = no limit). */
export class CpuGroup {
  readonly path: string;

  constructor(
    private readonly layout: Layout,
    name: string,
  ) {
    this.path = join(layout.root, name);
    mkdirSync(this.path, { recursive: true });
  }

  /** The file a process writes its pid into to join (a shell: `echo $$ > FILE; exec …`). */
  get procsFile(): string {
    return join(this.path, 'cgroup.procs');
  }

  setQuota(coreShare: number): void {
    const us = Number.isFinite(coreShare) ? Math.max(1000, Math.round(coreShare * PERIOD_US)) : -1;
    if (this.layout.version === 2) writeFileSync(join(this.path, 'cpu.max'), us < 0 ? `max ${PERIOD_US}` : `${us} ${PERIOD_US}`);
    else {
      writeFileSync(join(this.path, 'cpu.cfs_period_us'), String(PERIOD_US));
      writeFileSync(join(this.path, 'cpu.cfs_quota_us'), String(us));
    }
  }

  pids(): number[] {
    return readFileSync(this.procsFile, 'utf8').split('\n').filter(Boolean).map(Number);
  }

  /** Every process of the group (SIGSTOP/SIGCONT for the stall scenario). */
  signal(sig: NodeJS.Signals): void {
    for (const pid of this.pids()) {
      try {
        process.kill(pid, sig);
      } catch {
        // gone meanwhile
      }
    }
  }

  /** Lifts the limit (a throttled process stops slowly), moves what is left to the root group, removes the group. */
  remove(): void {
    try {
      this.setQuota(Number.POSITIVE_INFINITY);
      for (const pid of this.pids()) {
        try {
          writeFileSync(join(this.layout.root, 'cgroup.procs'), String(pid));
        } catch {
          // exited meanwhile
        }
      }
      rmdirSync(this.path);
    } catch {
      // already gone
    }
  }
}
