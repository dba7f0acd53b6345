import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { createPrimaryForwarder } from '../../../booster/workers/primary-forwarder.js';
import { createLogger } from '../../../common/log.js';

// A data-plane worker relays /_booster/ to its primary. The production lab saw a worker exit with
// ERR_STREAM_UNABLE_TO_PIPE: the client had gone before the primary's answer came (Node 22 and later
// throw it; the packages bundle Node 24, under which this test failed before the fix).
describe('primary forwarder', () => {
  const servers: Server[] = [];
  const listen = async (s: Server) => {
    servers.push(s);
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    return (s.address() as AddressInfo).port;
  };
  afterAll(async () => {
    for (const s of servers) s.closeAllConnections();
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it('a client gone before the primary answers: nothing is relayed, nothing throws, the next request is served', async () => {
    const primaryPort = await listen(
      createServer((req, res) => {
        setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'), req.url === '/_booster/slow' ? 300 : 0);
      }),
    );
    const forwarder = createPrimaryForwarder(`http://127.0.0.1:${primaryPort}`, createLogger({ name: 'test', level: 'silent' }));
    const workerPort = await listen(createServer((req, res) => forwarder.handle(req, res)));
    const uncaught: Error[] = [];
    const onUncaught = (err: Error) => uncaught.push(err);
    process.prependListener('uncaughtException', onUncaught);
    try {
      const gone = request({ host: '127.0.0.1', port: workerPort, path: '/_booster/slow' });
      gone.on('error', () => {});
      gone.end();
      await sleep(100);
      gone.destroy();
      await sleep(500);
      const answer = await new Promise<number>((resolve, reject) => {
        request({ host: '127.0.0.1', port: workerPort, path: '/_booster/status' }, (r) => {
          r.resume();
          resolve(r.statusCode ?? 0);
        })
          .on('error', reject)
          .end();
      });
      expect(answer).toBe(200);
      expect(uncaught.map((e) => e.message)).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      forwarder.close();
    }
  });
});
