import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyPatch, buildPatch, collectDirectory } from '../../common/patch/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { isAlive, REPO_ROOT, stopAll } from '../helpers/processes.js';
import { type AgentNode, fetchVersion, killServerGroup, makeAgentNode, serverPid, serverProcesses, startBoosterRecorder, waitForState } from './harness.js';
import { makeKey, trustOnly } from './helpers.js';

/** The agent with the real app server (`omflow server`), bootstrapped from this checkout. */
const key = makeKey();
let tdb: TestDatabase;
let booster: Awaited<ReturnType<typeof startBoosterRecorder>>;
let node: AgentNode;
const work = mkdtempSync(join(tmpdir(), 'omflow-real-'));
const installVersion = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version as string;

beforeAll(async () => {
  tdb = await createTestDatabase('postgres', { migrate: true });
  booster = await startBoosterRecorder();
  node = await makeAgentNode({
    nodeId: 'real-1',
    dbUrl: tdb.url,
    boosterPort: booster.port,
    extraEnv: {
      OMFLOW_PATCH_TRUSTED_KEYS: key.trustedEntry,
      OMFLOW_AGENT_START_TIMEOUT_MS: '60000',
      OMFLOW_AGENT_STOP_TIMEOUT_MS: '15000',
      OMFLOW_LOG_LEVEL: 'warn',
    },
  });
  delete node.env.OMFLOW_AGENT_BOOTSTRAP_DIR;
});

afterAll(async () => {
  await stopAll();
  killServerGroup(node);
  await booster.close();
  await tdb.drop();
  rmSync(node.dataDir, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

describe('agent + real app server', () => {
  it('bootstraps the installed code as the first release and runs it', async () => {
    node.start();
    await waitForState(node, 'running', 90_000);
    expect(await fetchVersion(node)).toBe(installVersion);
  });

  it('restarts the real server after kill -9', async () => {
    const before = serverPid(node)!;
    process.kill(before, 'SIGKILL');
    await waitFor(
      () => {
        const p = serverPid(node);
        return p && p !== before && isAlive(p);
      },
      { timeoutMs: 60_000, what: 'new server' },
    );
    await waitForState(node, 'running', 60_000);
    expect(serverProcesses(node).length).toBe(1);
  });

  it('installs a patch of the real server (node_modules linked by the agent) and serves the new version', async () => {
    const src = join(work, 'release');
    for (const part of ['server', 'common', 'migrations', 'package.json'])
      cpSync(join(REPO_ROOT, part), join(src, part), { recursive: true, filter: (s) => !s.includes('node_modules') });
    const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8'));
    pkg.version = `${installVersion}-p1`;
    writeFileSync(join(src, 'package.json'), JSON.stringify(pkg, null, 2));
    const bytes = buildPatch({ version: pkg.version, sequence: 1, privateKey: key.privateKey, entries: collectDirectory(src) }).bytes;
    await applyPatch(tdb.db, bytes, trustOnly(key));
    await waitFor(async () => (await fetchVersion(node)) === pkg.version, { timeoutMs: 90_000, what: 'patched version' });
    await waitForState(node, 'running', 30_000);
    expect(serverProcesses(node).length).toBe(1);
  });

  it('stopping the agent stops the real server gracefully', async () => {
    const pid = serverPid(node)!;
    await node.proc.stop(30_000);
    expect(node.proc.child.exitCode).toBe(0);
    expect(isAlive(pid)).toBe(false);
  });
});
