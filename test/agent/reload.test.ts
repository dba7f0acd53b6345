import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storePatch, verifyPatch } from '../../common/patch/index.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { startOmflow, stopAll } from '../helpers/processes.js';
import { type AgentNode, agentStatus, fetchVersion, killServerGroup, makeAgentNode, startBoosterRecorder, waitForState } from './harness.js';
import { fixturePatch, makeKey, trustOnly } from './helpers.js';

/**
 * `systemctl reload` of a running agent (SIGHUP to `omflow agent --config FILE`): a patch key
 * added to OMFLOW_PATCH_TRUSTED_KEYS is trusted without a restart (the agent verifies every
 * patch itself, so an untrusted one would be refused and halt the rollout), the app server keeps
 * running, and a restart-only key is named as such.
 */
const oldKey = makeKey();
const newKey = makeKey();

describe('agent reload (SIGHUP)', () => {
  let tdb: TestDatabase;
  let booster: Awaited<ReturnType<typeof startBoosterRecorder>>;
  let node: AgentNode;

  beforeAll(async () => {
    tdb = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
    booster = await startBoosterRecorder();
    node = await makeAgentNode({ nodeId: 'reload-agent', dbUrl: tdb.url, boosterPort: booster.port, extraEnv: { OMFLOW_LOG_LEVEL: 'info' } });
  });
  afterAll(async () => {
    await stopAll();
    if (node) killServerGroup(node);
    await booster?.close();
    await tdb?.drop();
    if (node) rmSync(node.dataDir, { recursive: true, force: true });
  });

  it('trusts a newly added patch key in place; the app server keeps running; a restart-only key is named', async () => {
    const file = join(node.dataDir, 'agent.env');
    const write = (extra: Record<string, string>) =>
      writeFileSync(
        file,
        `${Object.entries({ ...node.env, ...extra })
          .map(([k, v]) => `${k}=${v}`)
          .join('\n')}\n`,
      );
    write({ OMFLOW_PATCH_TRUSTED_KEYS: oldKey.trustedEntry });
    // The file is the whole configuration, as under systemd.
    node.proc = startOmflow('agent-reload', ['--config', file, 'agent'], { OMFLOW_LOG_LEVEL: undefined });
    const running = await waitForState(node, 'running');
    expect(await fetchVersion(node)).toBe('0.0.1');

    write({ OMFLOW_PATCH_TRUSTED_KEYS: `${oldKey.trustedEntry},${newKey.trustedEntry}`, OMFLOW_AGENT_RELEASES_KEEP: '4' });
    process.kill(node.proc.pid, 'SIGHUP');
    const line = await waitFor(
      () =>
        node.proc
          .output()
          .split('\n')
          .filter((l) => l.includes('"msg":"configuration reloaded"'))
          .map((l) => JSON.parse(l) as { changed: string[]; needsRestart: string[] })[0],
      { what: 'the reload line' },
    );
    expect(line.changed).toEqual(['OMFLOW_PATCH_TRUSTED_KEYS']);
    expect(line.needsRestart).toEqual(['OMFLOW_AGENT_RELEASES_KEEP']);
    // The app server was not touched by the reload.
    expect((await agentStatus(node)).pid).toBe(running.pid);

    // A patch signed by the new key only: the agent verifies it itself and installs it.
    const bytes = fixturePatch(newKey, '2.0.0', 1);
    await storePatch(tdb.db, bytes, verifyPatch(bytes, trustOnly(newKey)));
    await waitFor(async () => (await fetchVersion(node)) === '2.0.0', { timeoutMs: 60_000, what: 'the patch signed by the newly trusted key installed' });
    // The agent itself was not restarted by the reload.
    expect(node.proc.child.exitCode).toBeNull();
  });
});
