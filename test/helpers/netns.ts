import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';

/**
 * A private L2 network made of network namespaces: one namespace holds a bridge, every node
 * namespace gets a veth `eth0` on it with 10.213.0.<n>/24. Nothing is created in the root
 * namespace and nothing routes out, so tests may put any traffic on these addresses.
 */
export const LAB_SUBNET = '10.213.0';

/** Why network-namespace tests cannot run here, or null when they can. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'network-namespace tests need root (ip netns add)';
  const probe = `omfprobe-${randomBytes(3).toString('hex')}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.error) return `ip (iproute2) is not installed: ${add.error.message}`;
  if (add.status !== 0) return `ip netns add fails: ${add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return null;
}

export interface LabNode {
  ns: string;
  /** 10.213.0.<n> */
  ip: string;
}

export interface Lab {
  nodes: Record<string, LabNode>;
  /** Runs a command inside a namespace (`ip netns exec` keeps the pid: it execs, it does not fork). */
  spawnIn(node: string, cmd: string, args: string[], env: Record<string, string | undefined>): ChildProcess;
  /** Synchronous `ip …` inside a node namespace; returns stdout. */
  ipIn(node: string, args: string[]): string;
  /** IPv4 addresses on eth0 of a node. */
  addresses(node: string): string[];
  /** Kills the processes started with spawnIn (by pid), then deletes the namespaces. Idempotent. */
  destroy(): Promise<void>;
}

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function createLab(names: string[]): Lab {
  const id = randomBytes(3).toString('hex');
  const lan = `omf${id}-lan`;
  const created: string[] = [];
  const children = new Set<ChildProcess>();
  const nodes: Record<string, LabNode> = {};
  const lab: Lab = {
    nodes,
    spawnIn(node, cmd, args, env) {
      const child = spawn('ip', ['netns', 'exec', nodes[node]!.ns, cmd, ...args], { env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      child.once('exit', () => children.delete(child));
      return child;
    },
    ipIn: (node, args) => ip(['-n', nodes[node]!.ns, ...args]),
    addresses(node) {
      return ip(['-n', nodes[node]!.ns, '-o', '-4', 'addr', 'show', 'dev', 'eth0'])
        .split('\n')
        .map((l) => / inet (\S+)/.exec(l)?.[1])
        .filter((a): a is string => !!a);
    },
    async destroy() {
      for (const c of [...children]) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill('SIGTERM');
          await Promise.race([new Promise((r) => c.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
          if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        }
      }
      for (const ns of created.splice(0).reverse()) spawnSync('ip', ['netns', 'del', ns]);
    },
  };
  try {
    ip(['netns', 'add', lan]);
    created.push(lan);
    ip(['-n', lan, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', lan, 'link', 'set', 'br0', 'up']);
    names.forEach((name, i) => {
      const ns = `omf${id}-${name}`;
      ip(['netns', 'add', ns]);
      created.push(ns);
      const port = `p${i}`;
      ip(['-n', lan, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      ip(['-n', lan, 'link', 'set', port, 'master', 'br0', 'up']);
      const addr = `${LAB_SUBNET}.${i + 2}`;
      ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
      ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      nodes[name] = { ns, ip: addr };
    });
  } catch (err) {
    for (const ns of created.reverse()) spawnSync('ip', ['netns', 'del', ns]);
    throw err;
  }
  return lab;
}

/**
 * The same PostgreSQL database over its unix socket (`?host=/dir`): socket paths reach every
 * network namespace, 127.0.0.1 of the root namespace does not.
 */
export function unixSocketDbUrl(tcpUrl: string, socketDir = '/tmp'): string {
  const u = new URL(tcpUrl);
  const port = u.port || '5432';
  const socket = `${socketDir}/.s.PGSQL.${port}`;
  if (!existsSync(socket)) throw new Error(`PostgreSQL has no unix socket at ${socket}; start it with unix_socket_directories=${socketDir}`);
  u.hostname = 'localhost';
  u.searchParams.set('host', socketDir);
  return u.toString();
}
