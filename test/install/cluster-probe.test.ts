import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { PROBE_TIMEOUT_MS, probePair } from '../../install/dev-cluster/cluster-probe.js';

// The pair probe of `omflow dev` and the production lab: a booster that never answers (its host
// lost power) must not hold up the view of the other one.
describe('probePair', () => {
  const servers: Server[] = [];
  const listen = async (handler: Parameters<typeof createServer>[1]): Promise<string> => {
    const s = createServer(handler);
    servers.push(s);
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  afterAll(async () => {
    for (const s of servers) s.closeAllConnections();
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  });

  it('asks both boosters at once and gives up on a silent one after PROBE_TIMEOUT_MS', async () => {
    const silent = () => {}; // accepts the connection, never answers
    const a = await listen(silent);
    const b = await listen(silent);
    const active = await listen((req, res) => {
      if (req.url === '/_booster/active') res.writeHead(200).end('{"active":true}');
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"servers":[{"id":"s1","state":"up"}]}');
    });
    const t = Date.now();
    const view = await probePair([a, b, active], 'secret');
    const took = Date.now() - t;
    expect(view.roles).toEqual({ [a]: 'down', [b]: 'down', [active]: 'active' });
    expect(view.serversUp).toEqual(['s1']);
    // Asked one after the other, the two silent ones took 2 × PROBE_TIMEOUT_MS before the active was asked.
    expect(took).toBeLessThan(2 * PROBE_TIMEOUT_MS);
  });
});
