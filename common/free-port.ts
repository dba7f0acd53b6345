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
