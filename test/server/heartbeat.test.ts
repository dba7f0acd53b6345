import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Knex } from 'knex';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { EpochFence } from '../../common/protocol/epoch.js';
import { createHeartbeat } from '../../server/heartbeat.js';
import { Runtime } from '../../server/runtime.js';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(handler: (req: IncomingMessage, res: import('node:http').ServerResponse) => void): Promise<string> {
  const s = createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

/**
 * A booster whose host vanished answers nothing: every heartbeat to it waits for the timeout. The
 * other booster (the one that takes over) must keep getting every round's heartbeat meanwhile, or
 * it takes the servers out of rotation (the production lab's power-off of the active found this).
 */
describe('heartbeats with one booster gone silent', () => {
  it('the answering booster gets heartbeats while the silent one still holds its first', async () => {
    let aborted: () => void = () => {};
    const silentAborted = new Promise<void>((r) => (aborted = r));
    const received: number[] = [];
    const silent = await listen((req) => req.once('close', () => aborted())); // never answers
    const live = await listen((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push((JSON.parse(body) as { seq: number }).seq);
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ epoch: 1, role: 'standby' }));
      });
    });
    const hb = createHeartbeat({
      // The silent one first, as the last known active that just died.
      boosterUrls: [silent, live],
      secret: 'heartbeat-test-secret-0123456789',
      nodeId: 'hb-silent',
      url: 'http://127.0.0.1:1',
      runtime: new Runtime('hb-silent', '1.0.0', 4),
      fence: new EpochFence(),
      knex: { client: {} } as unknown as Knex,
      log: pino({ level: 'silent' }),
      intervalMs: 100,
    });
    hb.start();
    try {
      // The silent booster's first call is aborted at its timeout (500 ms); rounds go on every 100 ms.
      await silentAborted;
      expect(received.length).toBeGreaterThanOrEqual(2);
      expect(received).toEqual([...received].sort((a, b) => a - b));
    } finally {
      await hb.stop();
    }
  });
});
