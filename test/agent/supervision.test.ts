import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AGENT_PATH, BOOSTER_PATH } from '../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { isAlive, stopAll } from '../helpers/processes.js';
import {
  type AgentNode,
  agentCall,
  agentStatus,
  fetchVersion,
  isGone,
  killServerGroup,
  makeAgentNode,
  serverPid,
  serverProcesses,
  startBoosterRecorder,
  waitForState,
} from './harness.js';
import { FIXTURE_RELEASE } from './helpers.js';

// Supervision does not depend on the vendor; one PostgreSQL database is enough here.
let tdb: TestDatabase;
let booster: Awaited<ReturnType<typeof startBoosterRecorder>>;
let node: AgentNode;

beforeAll(async () => {
  tdb = await createTestDatabase('postgres', { migrate: true });
  booster = await startBoosterRecorder();
  node = await makeAgentNode({ nodeId: 'sup-1', dbUrl: tdb.url, boosterPort: booster.port, extraEnv: { FIXTURE_CHILD_PID_FILE: '' } });
  node.env.FIXTURE_CHILD_PID_FILE = join(node.dataDir, 'grandchild.pid');
  // This node's own copy of the "installed code", so the test can change it.
  node.env.OMFLOW_AGENT_BOOTSTRAP_DIR = join(node.dataDir, 'install');
  cpSync(FIXTURE_RELEASE, node.env.OMFLOW_AGENT_BOOTSTRAP_DIR, { recursive: true });
});

afterAll(async () => {
  await stopAll();
  killServerGroup(node);
  await booster.close();
  await tdb.drop();
  rmSync(node.dataDir, { recursive: true, force: true });
});

describe('agent supervision of the app server', () => {
  it('starting the agent bootstraps a release and starts the server', async () => {
    node.start();
    const s = await waitForState(node, 'running');
    expect(s.version).toBe('0.0.1');
    expect(existsSync(join(node.dataDir, 'releases', '0.0.1', 'common', 'bin', 'omflow.mjs'))).toBe(true);
    expect(await fetchVersion(node)).toBe('0.0.1');
    expect(serverProcesses(node)).toEqual([serverPid(node)]);
    // The boosters heard about it, signed.
    await waitFor(() => booster.calls.some((c) => c.path === BOOSTER_PATH.agentReport && c.body.state === 'running'), { what: 'running report' });
  });

  it('kill -9 of the app server: the agent restarts it', async () => {
    const before = serverPid(node)!;
    process.kill(before, 'SIGKILL');
    const pid = await waitFor(
      () => {
        const p = serverPid(node);
        return p && p !== before && isAlive(p) ? p : null;
      },
      { what: 'a new server pid', timeoutMs: 30_000 },
    );
    await waitForState(node, 'running');
    expect(await fetchVersion(node)).toBe('0.0.1');
    expect(serverProcesses(node)).toEqual([pid]);
  });

  it('kill -9 of the agent and a new agent: the server is adopted, never started twice', async () => {
    const pid = serverPid(node)!;
    await node.proc.kill9();
    expect(isAlive(pid)).toBe(true); // the server runs on without its agent
    node.start();
    await waitForState(node, 'running');
    expect(serverPid(node)).toBe(pid);
    expect(serverProcesses(node)).toEqual([pid]);
  });

  it('`omflow agent status` prints the resource state', async () => {
    const { startOmflow } = await import('../helpers/processes.js');
    const p = startOmflow('agent-status', ['agent', 'status'], node.env);
    expect(await p.exited).toBe(0);
    expect(p.output()).toMatch(/state:\s+running/);
    expect(p.output()).toMatch(/version:\s+0\.0\.1/);
  });

  it('a second agent on the same data directory refuses to start', async () => {
    const { startOmflow } = await import('../helpers/processes.js');
    const second = startOmflow('agent-dup', ['agent'], { ...node.env, OMFLOW_AGENT_PORT: '0' });
    const code = await second.exited;
    expect(code).not.toBe(0);
    expect(second.output()).toContain('AGENT_ERR_ALREADY_RUNNING');
    expect(serverProcesses(node).length).toBe(1);
  });

  it('changed installed code (no patch applied yet) is picked up on the next agent start, still one server', async () => {
    const pid = serverPid(node)!;
    await node.proc.kill9();
    writeFileSync(join(node.env.OMFLOW_AGENT_BOOTSTRAP_DIR, 'server', 'README.txt'), 'edited\n');
    node.start();
    await waitForState(node, 'running');
    expect(readFileSync(join(node.dataDir, 'current', 'server', 'README.txt'), 'utf8')).toBe('edited\n');
    expect(serverPid(node)).not.toBe(pid);
    expect(isGone(pid)).toBe(true);
    expect(serverProcesses(node)).toEqual([serverPid(node)]);
  });

  it('a crash loop ends in "failed", the booster is told, and an operator restart recovers', async () => {
    writeFileSync(node.controlFile, 'exit-on-start');
    process.kill(serverPid(node)!, 'SIGKILL');
    const s = await waitForState(node, 'failed', 40_000);
    expect(s.detail).toMatch(/recoveries/);
    await waitFor(() => booster.calls.some((c) => c.path === BOOSTER_PATH.agentReport && c.body.state === 'failed' && c.node === 'sup-1'), {
      what: 'failed report',
    });
    expect(booster.rejected).toBe(0);
    expect(serverProcesses(node)).toEqual([]);
    // A server that died during its start leaves nothing behind: its child went with its group.
    const orphan = Number(readFileSync(node.env.FIXTURE_CHILD_PID_FILE, 'utf8'));
    await waitFor(() => !isAlive(orphan), { what: 'the crashed server child gone', timeoutMs: 5000 });
    // It stays failed: no more restarts until an operator acts.
    const reports = booster.calls.filter((c) => c.body?.state === 'recovering').length;
    await new Promise((r) => setTimeout(r, 1000));
    expect(booster.calls.filter((c) => c.body?.state === 'recovering').length).toBe(reports);

    writeFileSync(node.controlFile, 'ok');
    await agentCall(node, 'POST', AGENT_PATH.restart);
    await waitForState(node, 'running');
    expect(serverProcesses(node).length).toBe(1);
  });

  it('stopping the agent drains through the booster and stops the whole server process group', async () => {
    const pid = serverPid(node)!;
    const grandchild = Number(readFileSync(node.env.FIXTURE_CHILD_PID_FILE, 'utf8'));
    expect(isAlive(grandchild)).toBe(true);
    const drainsBefore = booster.calls.filter((c) => c.path === BOOSTER_PATH.drain('sup-1')).length;
    await node.proc.stop(15_000);
    expect(node.proc.child.exitCode).toBe(0);
    expect(isAlive(pid)).toBe(false);
    await waitFor(() => !isAlive(grandchild), { what: 'grandchild gone', timeoutMs: 5000 });
    expect(booster.calls.filter((c) => c.path === BOOSTER_PATH.drain('sup-1')).length).toBeGreaterThan(drainsBefore);
    expect(existsSync(join(node.dataDir, 'server.pid'))).toBe(false);
    const status = await agentStatus(node).catch(() => null);
    expect(status).toBeNull();
  });
});
