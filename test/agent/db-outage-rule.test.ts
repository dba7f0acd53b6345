import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { isAlive, stopAll } from '../helpers/processes.js';
import { TcpRelay } from '../helpers/tcp-relay.js';
import { type AgentNode, agentStatus, killServerGroup, makeAgentNode, serverPid, startBoosterRecorder, waitForState } from './harness.js';
import { FIXTURE_RELEASE } from './helpers.js';

/**
 * ADR 0009, the agent's rule for a database outage longer than the grace: the server answers
 * /readyz with 503 SERVER_ERR_DB_UNAVAILABLE (the fixture's db-down mode says exactly what the
 * real server says). If the agent cannot reach the database either (its own connection goes
 * through a relay the test cuts), restarting the server fixes nothing: the agent reports
 * `degraded` and waits. If the agent does reach it, the server is at fault: today's recovery.
 */
let tdb: TestDatabase;
let relay: TcpRelay;
let booster: Awaited<ReturnType<typeof startBoosterRecorder>>;
let node: AgentNode;

beforeAll(async () => {
  tdb = await createTestDatabase('postgres', { migrate: true });
  const u = new URL(tdb.url);
  relay = new TcpRelay(u.hostname, Number(u.port || 5432));
  await relay.start();
  u.hostname = '127.0.0.1';
  u.port = String(relay.port);
  booster = await startBoosterRecorder();
  node = await makeAgentNode({ nodeId: 'dbrule-1', dbUrl: u.toString(), boosterPort: booster.port, extraEnv: { OMFLOW_LOG_LEVEL: 'info' } });
  node.env.OMFLOW_AGENT_BOOTSTRAP_DIR = join(node.dataDir, 'install');
  cpSync(FIXTURE_RELEASE, node.env.OMFLOW_AGENT_BOOTSTRAP_DIR, { recursive: true });
  node.start();
  await waitForState(node, 'running');
});

afterAll(async () => {
  await stopAll();
  killServerGroup(node);
  await booster.close();
  await relay.stop();
  await tdb.drop();
  rmSync(node.dataDir, { recursive: true, force: true });
});

describe('agent: a database outage past the grace is not a reason to restart the server', () => {
  it('the agent cannot reach the database either: degraded, never restarted, running again when it is back', async () => {
    const pid = serverPid(node)!;
    const reportsBefore = booster.calls.length;
    relay.cut();
    writeFileSync(node.controlFile, 'db-down');
    try {
      const s = await waitForState(node, 'degraded', 15_000);
      expect(s.detail).toMatch(/database unreachable/);
      // Deep checks every 500 ms with a threshold of 2 and 3 recoveries allowed: under the
      // old rule this window holds several restarts and ends in `failed`.
      for (let i = 0; i < 20; i++) {
        await new Promise((r) => setTimeout(r, 200));
        expect(serverPid(node)).toBe(pid);
      }
      expect((await agentStatus(node)).state).toBe('degraded');
    } finally {
      relay.restore();
      writeFileSync(node.controlFile, 'ok');
    }
    await waitForState(node, 'running', 15_000);
    expect(serverPid(node)).toBe(pid);
    expect(isAlive(pid)).toBe(true);
    const states = booster.calls
      .slice(reportsBefore)
      .filter((c) => c.path === BOOSTER_PATH.agentReport)
      .map((c) => c.body.state as string);
    expect(states).not.toContain('recovering');
    expect(states).not.toContain('failed');
    expect(states).toContain('degraded');
    // The agent's own monitor logged the outage once each way.
    await waitFor(() => node.proc.output().includes('database reachable again'), { timeoutMs: 10_000, what: 'reachable-again line' });
    const lines = node.proc
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string });
    expect(lines.filter((l) => l.msg === 'database unreachable')).toHaveLength(1);
    expect(lines.filter((l) => l.msg === 'database reachable again')).toHaveLength(1);
  }, 60_000);

  it('the agent reaches the database but the server says it cannot: the server is at fault and is restarted', async () => {
    const pid = serverPid(node)!;
    writeFileSync(node.controlFile, 'db-down');
    try {
      await waitFor(
        () => {
          const p = serverPid(node);
          return p && p !== pid ? p : null;
        },
        { timeoutMs: 30_000, what: 'a restarted server' },
      );
    } finally {
      writeFileSync(node.controlFile, 'ok');
    }
    await waitForState(node, 'running', 30_000);
  }, 60_000);
});
