import { describe, expect, it } from 'vitest';
import { createActiveDuties } from '../../../booster/leadership/active-duties.js';
import { createMetrics } from '../../../booster/metrics.js';

/** What a takeover starts, with the parts as recorders. */
function duties(refreshServers: () => Promise<void>) {
  const started: string[] = [];
  const listener = createActiveDuties({
    metrics: createMetrics({ defaults: false }),
    vip: null,
    nodeId: 'duty-b1',
    record: async () => {},
    registerNode: async () => {},
    refreshServers,
    steps: { start: () => void started.push('steps'), poke: () => void started.push('poke'), stop: async () => {} },
    purge: { start: () => void started.push('purge'), stop: async () => {} },
    refreshWaitMs: 50,
  });
  return { listener, started };
}

describe('active duties', () => {
  it('a new active dispatches steps after refreshing the servers rows', async () => {
    const order: string[] = [];
    const { listener, started } = duties(async () => void order.push('refresh'));
    await listener({ kind: 'became-active', epoch: 3 });
    expect(order).toEqual(['refresh']);
    expect(started).toEqual(['steps', 'purge']);
  });

  it('a read of the servers rows that never answers does not keep the new active from dispatching (failed before: steps never started)', async () => {
    const { listener, started } = duties(() => new Promise<void>(() => {}));
    await listener({ kind: 'became-active', epoch: 4 });
    expect(started).toEqual(['steps', 'purge']);
    await listener({ kind: 'lease-regained', epoch: 4, previousEpoch: 4 });
    expect(started).toEqual(['steps', 'purge', 'poke']);
  });

  it('a refresh that fails still lets dispatch start', async () => {
    const { listener, started } = duties(() => Promise.reject(new Error('database unreachable')));
    await listener({ kind: 'became-active', epoch: 5 });
    expect(started).toEqual(['steps', 'purge']);
  });
});
