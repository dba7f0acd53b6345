import { describe, expect, it } from 'vitest';
import type { Choice } from '../../../booster/server-table/choice.js';
import { ServerTable, type ServerView, type TableOptions, type Transition } from '../../../booster/server-table/server-table.js';
import type { Heartbeat } from '../../../common/protocol/messages.js';
import { idleHeartbeat } from '../fixtures.js';

/** ServerTable is pure policy: driven here by a hand-moved clock and scripted heartbeats. */

/** The picked server's id, or why none was picked. */
const picked = (c: Choice<ServerView>) => (c.kind === 'server' ? c.server.id : c.kind);
const OPTS: TableOptions = {
  heartbeatTimeoutMs: 3000,
  healthRise: 2,
  healthFall: 2,
  ejectAfter5xx: 3,
  ejectMs: 1000,
  maxEjectedPercent: 50,
  slowStartMs: 0,
  maxInflightPerServer: 2,
};

function setup(opts: Partial<TableOptions> = {}) {
  let now = 1000;
  const transitions: Transition[] = [];
  const table = new ServerTable(
    { ...OPTS, ...opts },
    () => now,
    (t) => transitions.push({ ...t }),
  );
  const seqs = new Map<string, number>();
  const hb = (id: string, extra: Partial<Heartbeat> = {}) => {
    const seq = (seqs.get(id) ?? 0) + 1;
    seqs.set(id, seq);
    return table.heartbeat(idleHeartbeat({ nodeId: id, url: `http://127.0.0.1:${9000 + seqs.size}`, seq, ...extra }));
  };
  return { table, transitions, hb, advance: (ms: number) => (now += ms), at: () => now };
}

describe('ServerTable', () => {
  it('a heartbeat brings a server up once; a missed heartbeat window takes it down', () => {
    const { table, transitions, hb, advance } = setup();
    hb('a');
    hb('a');
    expect(transitions.map((t) => [t.from, t.to])).toEqual([['down', 'up']]);
    expect(table.routable.map((e) => e.id)).toEqual(['a']);
    advance(3001);
    table.evaluate();
    table.evaluate();
    expect(transitions.map((t) => [t.to, t.reason])).toEqual([
      ['up', 'healthy'],
      ['down', 'heartbeat timeout'],
    ]);
    expect(table.routable).toEqual([]);
  });

  it('ignores a reordered heartbeat of the same process start, accepts one of a new start', () => {
    const { table, hb } = setup();
    hb('a', { seq: 5 });
    expect(hb('a', { seq: 3 }).accepted).toBe(false);
    expect(hb('a', { seq: 1, startedAt: 'start-2' }).accepted).toBe(true);
    expect(table.servers.get('a')!.heartbeat!.startedAt).toBe('start-2');
  });

  it('drain and agent state change only through the table, unknown servers are refused', () => {
    const { table, transitions, hb } = setup();
    hb('a');
    expect(table.setDraining('a', true)).toBe(true);
    expect(table.stateOf(table.servers.get('a')!)).toBe('draining');
    expect(table.setDraining('a', false)).toBe(true);
    expect(transitions.map((t) => t.to)).toEqual(['up', 'draining', 'up']);
    expect(table.setDraining('nope', true)).toBe(false);
    expect(table.setAgentState('a', 'running', 'http://agent')).toBe(true);
    expect(table.servers.get('a')).toMatchObject({ agentState: 'running', agentUrl: 'http://agent' });
    expect(table.setAgentState('nope', 'running', 'http://agent')).toBe(false);
  });

  it('health and readiness: each falls after healthFall failures and rises after healthRise passes', () => {
    const { table, hb } = setup();
    hb('a');
    const a = table.servers.get('a')!;
    table.recordHealth(a, true);
    table.recordHealth(a, false);
    expect(table.stateOf(a)).toBe('up');
    table.recordHealth(a, false);
    expect(table.stateOf(a)).toBe('down');
    table.recordHealth(a, true);
    expect(table.stateOf(a)).toBe('down');
    table.recordHealth(a, true);
    expect(table.stateOf(a)).toBe('up');
    // One failed /readyz (slow on a loaded host) is not an outage; healthFall of them are.
    table.recordHealth(a, true, false);
    expect(table.stateOf(a)).toBe('up');
    expect(table.readinessSettling(a)).toBe(true);
    table.recordHealth(a, true, true);
    table.recordHealth(a, true, false);
    expect(table.stateOf(a)).toBe('up');
    table.recordHealth(a, true, false);
    expect(table.stateOf(a)).toBe('down');
    table.recordHealth(a, true, true);
    expect(table.stateOf(a)).toBe('down');
    table.recordHealth(a, true, true);
    expect(table.stateOf(a)).toBe('up');
    expect(table.readinessSettling(a)).toBe(false);
  });

  it('passive ejection after consecutive 5xx, never the last server, doubling on repeats', () => {
    const { table, hb, advance } = setup({ maxEjectedPercent: 100 });
    hb('a');
    hb('b');
    const a = table.servers.get('a')!;
    const b = table.servers.get('b')!;
    expect(table.recordFailure(a, 1)).toBe(false);
    table.recordSuccess(a);
    expect(table.recordFailure(a, 2)).toBe(false);
    expect(table.recordFailure(a, 1)).toBe(true);
    expect(table.stateOf(a)).toBe('ejected');
    expect(table.routable.map((e) => e.id)).toEqual(['b']);
    // b is now the last routable server: never ejected.
    expect(table.recordFailure(b, 5)).toBe(false);
    advance(1001);
    table.evaluate();
    expect(table.stateOf(a)).toBe('up');
    // A repeat doubles the ejection.
    expect(table.recordFailure(a, 5)).toBe(true);
    advance(1001);
    hb('a');
    hb('b');
    expect(table.stateOf(a)).toBe('ejected');
    advance(1000);
    table.evaluate();
    expect(table.stateOf(a)).toBe('up');
  });

  it('panic floor: when every live server is ejected, the ejected ones are used anyway', () => {
    const { table, hb, advance } = setup({ maxEjectedPercent: 100, heartbeatTimeoutMs: 500, ejectMs: 10_000 });
    hb('a');
    hb('b');
    expect(table.recordFailure(table.servers.get('a')!, 5)).toBe(true);
    advance(400);
    hb('a'); // b stops heartbeating and goes down: only the ejected a is left
    advance(200);
    table.evaluate();
    expect(table.routable).toEqual([]);
    expect(picked(table.pick())).toBe('a');
  });

  it('pick: skips full servers, queues (no-room) when all are full, no-server when none is left', () => {
    const { table, hb } = setup();
    hb('a');
    hb('b');
    const a = table.servers.get('a')!;
    const b = table.servers.get('b')!;
    table.startRequest(a);
    table.startRequest(a);
    for (let i = 0; i < 5; i++) expect(picked(table.pick())).toBe('b');
    table.startRequest(b);
    table.startRequest(b);
    expect(picked(table.pick())).toBe('no-room');
    table.endRequest(b, false);
    expect(picked(table.pick())).toBe('b');
    expect(picked(table.pick(new Set(['a', 'b'])))).toBe('no-server');
  });

  it('pick: the lower (load + in-flight + 1) / weight of two candidates wins', () => {
    const { table, hb } = setup({ maxInflightPerServer: 100 });
    hb('a', { inflight: 10 });
    hb('b', { inflight: 0 });
    const seq = [0.1, 0.9, 0.5];
    let i = 0;
    const random = () => seq[i++ % seq.length];
    expect(picked(table.pick(undefined, random))).toBe('b');
  });

  it('slow start ramps from 10 % to 100 % over slowStartMs', () => {
    const { table, hb, advance } = setup({ slowStartMs: 1000 });
    hb('a');
    const a = table.servers.get('a')!;
    expect(table.rampOf(a)).toBe(0.1);
    advance(500);
    expect(table.rampOf(a)).toBe(0.5);
    advance(500);
    expect(table.rampOf(a)).toBe(1);
  });

  it('license limit: the first N live servers by id are routed, the others are not', () => {
    const { table, hb } = setup();
    table.setMaxServers(1);
    hb('b');
    hb('a');
    expect(table.routable.map((e) => e.id)).toEqual(['a']);
    expect(table.servers.get('b')!.licensed).toBe(false);
  });

  it('step room: capacity − running − dispatched since the last heartbeat', () => {
    const { table, hb } = setup();
    hb('a', { stepCapacity: 3, runningSteps: 1 });
    const a = table.servers.get('a')!;
    table.stepDispatched(a);
    expect(table.stepRoom(a)).toBe(1);
    table.stepReturned(a);
    table.stepReturned(a);
    expect(table.stepRoom(a)).toBe(2);
    table.stepDispatched(a);
    hb('a', { stepCapacity: 3, runningSteps: 2 });
    expect(table.stepRoom(a)).toBe(1);
  });
});
