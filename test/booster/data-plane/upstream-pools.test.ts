import { describe, expect, it } from 'vitest';
import { type PoolFactory, type UpstreamPool, UpstreamPools } from '../../../booster/data-plane/upstream-pools.js';

/** UpstreamPools with a fake factory: one pool per server, replaced when its URL changes. */
const OPTS = { connectTimeoutMs: 1, headersTimeoutMs: 1, idleTimeoutMs: 1, keepAliveMs: 1, connectionsPerServer: 1 };

function fakes() {
  const made: { origin: string; closed: number; destroyed: number }[] = [];
  const factory: PoolFactory = (origin) => {
    const rec = { origin, closed: 0, destroyed: 0 };
    made.push(rec);
    return {
      close: async () => void rec.closed++,
      destroy: async () => void rec.destroyed++,
    } as unknown as UpstreamPool;
  };
  return { made, factory };
}

describe('UpstreamPools', () => {
  it('keeps one pool per server and replaces it (closing the old one) when the URL changes', async () => {
    const { made, factory } = fakes();
    const pools = new UpstreamPools(OPTS, factory);
    const a1 = pools.get({ id: 'a', url: 'http://127.0.0.1:1/' });
    expect(pools.get({ id: 'a', url: 'http://127.0.0.1:1/' })).toBe(a1);
    pools.get({ id: 'b', url: 'http://127.0.0.1:2' });
    const a2 = pools.get({ id: 'a', url: 'http://127.0.0.1:3' });
    expect(a2).not.toBe(a1);
    expect(a2.origin.port).toBe('3');
    expect(made.map((m) => [m.origin, m.closed])).toEqual([
      ['http://127.0.0.1:1', 1],
      ['http://127.0.0.1:2', 0],
      ['http://127.0.0.1:3', 0],
    ]);
    expect(pools.size).toBe(2);
  });

  it('close drains every pool once and returns the same promise; destroy is idempotent; no new pool after close', async () => {
    const { made, factory } = fakes();
    const pools = new UpstreamPools(OPTS, factory);
    const a = pools.get({ id: 'a', url: 'http://127.0.0.1:1' });
    const p1 = pools.close();
    expect(pools.close()).toBe(p1);
    await p1;
    expect(made[0].closed).toBe(1);
    expect(pools.get({ id: 'a', url: 'http://127.0.0.1:1' })).toBe(a); // known pools still answer
    expect(() => pools.get({ id: 'c', url: 'http://127.0.0.1:9' })).toThrow();
    pools.destroy();
    pools.destroy();
    expect(made[0].destroyed).toBe(1);
  });
});
