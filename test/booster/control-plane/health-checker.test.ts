import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HealthChecker } from '../../../booster/control-plane/health-checker.js';
import { UpstreamPools } from '../../../booster/data-plane/upstream-pools.js';
import { ServerTable, type Transition } from '../../../booster/server-table/server-table.js';
import { createLogger } from '../../../common/log.js';
import { SERVER_PATH } from '../../../common/protocol/headers.js';
import { idleHeartbeat } from '../fixtures.js';

/**
 * The health checker against a real loopback app server whose /readyz answers from a script.
 * The deep-check interval is a minute, so a server that comes back within the test did so
 * through the fast re-check of a server whose readiness is failing, not at the next deep check.
 */
const log = createLogger({ name: 'test', level: 'silent' });
const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function appServer(readyAnswers: number[]): Promise<{ url: string; asked: () => number }> {
  let asked = 0;
  const server: Server = createServer((req, res) => {
    if (req.url === SERVER_PATH.readyz) {
      // After the script runs out the server is ready for good.
      const status = readyAnswers[asked] ?? 200;
      asked++;
      res.writeHead(status);
      return void res.end();
    }
    res.writeHead(200);
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  closers.push(() => new Promise<void>((r) => server.close(() => r())));
  closers.push(() => server.closeAllConnections());
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, asked: () => asked };
}

function checkerFor(url: string) {
  const transitions: Transition[] = [];
  const table = new ServerTable(
    {
      heartbeatTimeoutMs: 60_000,
      healthRise: 2,
      healthFall: 2,
      ejectAfter5xx: 3,
      ejectMs: 1000,
      maxEjectedPercent: 50,
      slowStartMs: 0,
      maxInflightPerServer: 10,
    },
    () => performance.now(),
    (t) => transitions.push({ ...t }),
  );
  table.heartbeat(idleHeartbeat({ nodeId: 'srv', url }));
  const pools = new UpstreamPools({ connectTimeoutMs: 1000, headersTimeoutMs: 1000, idleTimeoutMs: 1000, keepAliveMs: 1000, connectionsPerServer: 2 });
  const checker = new HealthChecker(
    table,
    pools,
    { healthIntervalMs: 50, healthFastIntervalMs: 20, healthTimeoutMs: 1000, readyIntervalMs: 60_000, heartbeatTimeoutMs: 60_000 },
    () => performance.now(),
    log,
  );
  checker.start();
  closers.push(() => pools.close());
  closers.push(() => checker.stop());
  const srv = table.servers.get('srv')!;
  return { table, srv, transitions };
}

async function until(what: string, fn: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out: ${what}`);
}

describe('HealthChecker readiness', () => {
  it('one failed /readyz does not take the server out; it is asked again at once, not at the next deep check', async () => {
    const app = await appServer([503]);
    const { table, srv, transitions } = checkerFor(app.url);
    await until('the failed /readyz and the next one', () => app.asked() >= 2 && table.stateOf(srv) === 'up');
    expect(table.stateOf(srv)).toBe('up');
    expect(transitions.filter((t) => t.to === 'down')).toEqual([]);
  });

  it('a server out for readiness comes back after healthRise passing /readyz, long before the next deep check', async () => {
    const app = await appServer([503, 503, 503]);
    const { table, srv, transitions } = checkerFor(app.url);
    await until('the server taken out for readiness', () => transitions.some((t) => t.to === 'down' && t.reason === 'readiness check failing'));
    await until('the server back up', () => table.stateOf(srv) === 'up' && app.asked() >= 5);
    expect(transitions.map((t) => t.to)).toEqual(['up', 'down', 'up']);
  });
});
