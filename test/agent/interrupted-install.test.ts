import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyPatch, rolloutStatus } from '../../common/patch/index.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { stopAll } from '../helpers/processes.js';
import { type AgentNode, fetchVersion, killServerGroup, makeAgentNode, serverProcesses, waitForState } from './harness.js';
import { fixturePatch, makeKey, trustOnly } from './helpers.js';

const key = makeKey();
let tdb: TestDatabase;
let node: AgentNode;

beforeAll(async () => {
  tdb = await createTestDatabase('postgres', { migrate: true });
  node = await makeAgentNode({ nodeId: 'int-1', dbUrl: tdb.url, extraEnv: { OMFLOW_PATCH_TRUSTED_KEYS: key.trustedEntry, OMFLOW_AGENT_SOAK_MS: '4000' } });
});

afterAll(async () => {
  await stopAll();
  killServerGroup(node);
  await tdb.drop();
  rmSync(node.dataDir, { recursive: true, force: true });
});

describe('an agent killed in the middle of installing a patch', () => {
  it('finishes the health gate after its restart, with a single server', async () => {
    node.start();
    await waitForState(node, 'running');
    await applyPatch(tdb.db, fixturePatch(key, '5.0.0', 1), trustOnly(key));
    await waitFor(async () => (await rolloutStatus(tdb.db)).rollout!.nodes.some((n) => n.state === 'soaking'), { timeoutMs: 30_000, what: 'soaking' });
    await node.proc.kill9();
    node.start();
    await waitFor(async () => (await rolloutStatus(tdb.db)).rollout!.nodes.some((n) => n.state === 'done'), { timeoutMs: 30_000, what: 'done after restart' });
    await waitForState(node, 'running');
    expect(await fetchVersion(node)).toBe('5.0.0');
    expect(serverProcesses(node).length).toBe(1);
  });
});
