import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildPatch, peekManifest, rolloutStatus, storePatch, type VerifiedPatch } from '../../common/patch/index.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { startOmflow, stopAll } from '../helpers/processes.js';
import { type AgentNode, fetchVersion, killServerGroup, makeAgentNode, type RecordedCall, startBoosterRecorder, waitForState } from './harness.js';
import { fixtureEntries, fixturePatch, makeKey } from './helpers.js';

const key = makeKey();

/** Most nodes drained at the same moment, from the booster's call log. */
function maxConcurrentlyDrained(calls: RecordedCall[]): number {
  const drained = new Set<string>();
  let max = 0;
  for (const c of calls) {
    const m = /^\/_booster\/servers\/([^/]+)\/(drain|undrain)$/.exec(c.path);
    if (!m) continue;
    if (m[2] === 'drain') drained.add(m[1]);
    else drained.delete(m[1]);
    max = Math.max(max, drained.size);
  }
  return max;
}

for (const vendor of vendorsUnderTest()) {
  describe(`3-node patch rollout (${vendor})`, () => {
    let tdb: TestDatabase;
    let booster: Awaited<ReturnType<typeof startBoosterRecorder>>;
    const nodes: AgentNode[] = [];
    const work = mkdtempSync(join(tmpdir(), 'omflow-rollout-'));
    let cliEnv: Record<string, string>;

    async function apply(bytes: Buffer, name: string): Promise<{ code: number | null; out: string }> {
      const file = join(work, `${name}.tar.gz`);
      writeFileSync(file, bytes);
      const p = startOmflow(`apply-${name}`, ['patch', 'apply', file], cliEnv);
      const code = await p.exited;
      await p.stop();
      return { code, out: p.output() };
    }
    const versions = () => Promise.all(nodes.map(fetchVersion));
    const status = () => rolloutStatus(tdb.db);

    beforeAll(async () => {
      tdb = await createTestDatabase(vendor, { migrate: true });
      booster = await startBoosterRecorder();
      for (const id of ['n1', 'n2', 'n3']) {
        const node = await makeAgentNode({
          nodeId: `${vendor}-${id}`,
          dbUrl: tdb.url,
          boosterPort: booster.port,
          extraEnv: { OMFLOW_PATCH_TRUSTED_KEYS: key.trustedEntry },
        });
        nodes.push(node);
        booster.agentPorts.push(node.agentPort);
        node.start();
      }
      await Promise.all(nodes.map((n) => waitForState(n, 'running')));
      cliEnv = { ...nodes[0].env };
    });

    afterAll(async () => {
      await stopAll();
      for (const n of nodes) killServerGroup(n);
      await booster.close();
      await tdb.drop();
      for (const n of nodes) rmSync(n.dataDir, { recursive: true, force: true });
      rmSync(work, { recursive: true, force: true });
    });

    it('a patch applied on one node reaches all three, one node down at a time', async () => {
      expect(await versions()).toEqual(['0.0.1', '0.0.1', '0.0.1']);
      const r = await apply(fixturePatch(key, '1.0.0', 1), 'v1');
      expect(r.code, r.out).toBe(0);
      expect(booster.calls.some((c) => c.path === BOOSTER_PATH.patchNotice && c.body.version === '1.0.0')).toBe(true);
      await waitFor(async () => (await versions()).every((v) => v === '1.0.0'), { timeoutMs: 60_000, what: 'all nodes on 1.0.0' });
      await waitFor(async () => (await status()).rollout!.nodes.filter((n) => n.state === 'done').length === 3, { what: 'three done rows' });
      expect(maxConcurrentlyDrained(booster.calls)).toBe(1);
      for (const n of nodes) expect(booster.calls.some((c) => c.path === BOOSTER_PATH.undrain(n.nodeId))).toBe(true);
      expect(booster.rejected).toBe(0);
    });

    it('a replayed older sequence is refused at apply', async () => {
      const r = await apply(fixturePatch(key, '1.0.5', 1), 'replay');
      expect(r.code).not.toBe(0);
      expect(r.out).toContain('AGENT_ERR_PATCH_SEQUENCE_REPLAY');
    });

    it('a patch whose server exits on start: that node reverts, the rollout halts, the others never install it', async () => {
      const r = await apply(fixturePatch(key, '1.1.0', 2, { mode: 'exit-on-start' }), 'bad');
      expect(r.code, r.out).toBe(0);
      await waitFor(async () => (await status()).rollout!.state === 'halted', { timeoutMs: 60_000, what: 'halted rollout' });
      await waitFor(async () => (await status()).rollout!.nodes.some((n) => n.state === 'reverted'), { what: 'a reverted node' });
      // Give the other agents several polls to misbehave.
      await new Promise((res) => setTimeout(res, 1500));
      const s = await status();
      expect(s.rollout!.haltedReason).toMatch(/health gate/);
      const touched = s.rollout!.nodes.filter((n) => !['pending'].includes(n.state));
      expect(touched.length).toBe(1);
      expect(touched[0].state).toBe('reverted');
      expect(await versions()).toEqual(['1.0.0', '1.0.0', '1.0.0']);
      const installedBad = nodes.filter((n) => existsSync(join(n.dataDir, 'releases', '1.1.0')));
      expect(installedBad.map((n) => n.nodeId)).toEqual([touched[0].serverId]);
      await Promise.all(nodes.map((n) => waitForState(n, 'running')));
    });

    it('a hostile patch smuggled into the database is refused by the agent itself; nothing is written outside staging', async () => {
      const bytes = buildPatch({
        version: '1.1.5',
        sequence: 3,
        privateKey: key.privateKey,
        entries: fixtureEntries({ extra: [{ path: '../../escaped.txt', data: Buffer.from('x') }] }),
      }).bytes;
      const manifest = peekManifest(bytes);
      // Bypasses apply's own verification, as a tampered database would.
      const fake = {
        manifest,
        manifestBytes: Buffer.from(JSON.stringify(manifest)),
        signatureB64: 'AA==',
        archiveSha256: createHash('sha256').update(bytes).digest('hex'),
        archiveSize: bytes.length,
        entries: [],
      } as VerifiedPatch;
      await storePatch(tdb.db, bytes, fake);
      await waitFor(async () => (await status()).rollout!.state === 'halted', { timeoutMs: 30_000, what: 'halted hostile rollout' });
      const s = await status();
      const refused = s.rollout!.nodes.filter((n) => n.state === 'refused');
      expect(refused.length).toBe(1);
      expect(refused[0].error).toContain('AGENT_ERR_PATCH_PATH_TRAVERSAL');
      for (const n of nodes) {
        expect(existsSync(join(n.dataDir, '..', 'escaped.txt'))).toBe(false);
        expect(existsSync(join(n.dataDir, 'escaped.txt'))).toBe(false);
        expect(readdirSync(join(n.dataDir, 'releases')).filter((d) => d.startsWith('.staging') || d === '1.1.5')).toEqual([]);
      }
      expect(await versions()).toEqual(['1.0.0', '1.0.0', '1.0.0']);
    });

    it('a new good patch rolls out after a halt, and rollback returns every node to its previous release', async () => {
      const r = await apply(fixturePatch(key, '1.2.0', 4), 'v12');
      expect(r.code, r.out).toBe(0);
      await waitFor(async () => (await versions()).every((v) => v === '1.2.0'), { timeoutMs: 60_000, what: 'all nodes on 1.2.0' });
      await waitFor(async () => (await status()).rollout!.nodes.filter((n) => n.state === 'done').length === 3, { what: 'three done rows' });
      const rb = startOmflow('rollback', ['patch', 'rollback'], cliEnv);
      expect(await rb.exited).toBe(0);
      await waitFor(async () => (await versions()).every((v) => v === '1.0.0'), { timeoutMs: 60_000, what: 'all nodes back on 1.0.0' });
      await waitFor(async () => (await status()).rollout!.state === 'rolled_back', { what: 'rolled_back state' });
      expect(maxConcurrentlyDrained(booster.calls)).toBe(1);
    });
  });
}
