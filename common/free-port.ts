import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';

/**
 * A TCP port that was free on `host` a moment ago (listen on 0, close). Another process may
 * take it before the caller listens; callers that can, listen on 0 themselves instead.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Whether `port` on `host` can be listened on right now. */
export function portFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/**
 * The first of `count` consecutive ports that were all free a moment ago (for a tool that takes
 * a base port and uses the next ones too). Same caveat as freePort.
 */
export async function freePortRun(count: number, host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = await freePort(host);
    let all = base + count - 1 <= 65535;
    for (let p = base + 1; all && p < base + count; p++) all = await portFree(p, host);
    if (all) return base;
  }
  throw new Error(`no run of ${count} free ports found on ${host}`);
}
