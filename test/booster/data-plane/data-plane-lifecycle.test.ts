import { createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createDataPlane, type DataPlane } from '../../../booster/data-plane/data-plane.js';
import { DbPressurePolicy } from '../../../booster/data-plane/db-pressure.js';
import { UpstreamPools } from '../../../booster/data-plane/upstream-pools.js';
import { createMetrics } from '../../../booster/metrics.js';
import { ServerTable } from '../../../booster/server-table/server-table.js';
import { waitFor } from '../../helpers/poll.js';
import { boosterConfig, idleHeartbeat, silentLog } from '../fixtures.js';

/**
 * createDataPlane's lifecycle with real loopback sockets and no database: close() drains (the
 * request in flight finishes, new connections are refused, every caller gets the same promise),
 * destroy() cuts at once. An upstream that holds /slow until the test lets it go.
 */
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function setup(): Promise<{ plane: DataPlane; port: number; held: ServerResponse[] }> {
  const held: ServerResponse[] = [];
  const upstream = createServer((req, res) => {
    if (req.url === '/slow') held.push(res);
    else res.end('ok');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  closers.push(
    () => new Promise((r) => upstream.close(r)),
    () => upstream.closeAllConnections(),
  );
  const cfg = boosterConfig('lifecycle').booster;
  const clock = () => performance.now();
  const table = new ServerTable(cfg, clock, () => {});
  table.heartbeat(idleHeartbeat({ nodeId: 'u1', url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` }));
  const pools = new UpstreamPools(cfg);
  closers.push(() => pools.destroy());
  const plane = createDataPlane({
    cfg,
    nodeId: 'lifecycle',
    table,
    pools,
    metrics: createMetrics(),
    log: silentLog,
    pressure: new DbPressurePolicy(cfg, () => table.routable, clock),
    epoch: () => 1,
    gate: { serves: () => true, activeUrl: () => null, stopping: () => false, allowsDistribution: () => true, maintenance: () => null },
    control: (_req, res) => res.end(),
  });
  closers.push(() => plane.destroy());
  return { plane, port: await plane.listen(0), held };
}

function get(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('createDataPlane', () => {
  it('close() lets the request in flight finish, refuses new connections, and is one promise for every caller', async () => {
    const { plane, port, held } = await setup();
    expect(await get(port, '/fast')).toEqual({ status: 200, body: 'ok' });
    const slow = get(port, '/slow');
    await waitFor(() => held.length === 1, { what: 'the upstream holds /slow' });
    let closed = false;
    const first = plane.close();
    void first.then(() => (closed = true));
    expect(plane.close()).toBe(first);
    await expect(get(port, '/fast')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(closed).toBe(false);
    held[0].end('late');
    expect(await slow).toEqual({ status: 200, body: 'late' });
    await first;
    expect(closed).toBe(true);
  });

  it('destroy() cuts the request in flight at once and is idempotent; close() after it resolves at once', async () => {
    const { plane, port, held } = await setup();
    const slow = get(port, '/slow');
    await waitFor(() => held.length === 1, { what: 'the upstream holds /slow' });
    plane.destroy();
    plane.destroy();
    await expect(slow).rejects.toThrow();
    await expect(get(port, '/fast')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await plane.close();
  });
});
