import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { ReleaseStore } from '../../agent/releases.js';
import { buildPatch, extractToStaging, type RawTarEntry, readTar, verifyPatch, writeTar } from '../../common/patch/index.js';
import { FIXTURE_RELEASE, fixtureEntries, fixturePatch, makeKey, trustOnly } from './helpers.js';

const key = makeKey();
const other = makeKey();
const trusted = trustOnly(key);
const tmp = mkdtempSync(join(tmpdir(), 'omflow-patch-verify-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function hostile(extra: RawTarEntry[]): Buffer {
  return buildPatch({ version: '2.0.0', sequence: 2, privateKey: key.privateKey, entries: fixtureEntries({ extra }) }).bytes;
}

/** Replaces the payload of a patch (keeping the signed manifest): a tampered archive. */
function tamperPayload(bytes: Buffer): Buffer {
  const outer = readTar(gunzipSync(bytes), { maxEntries: 10, maxEntryBytes: 1e9, maxTotalBytes: 1e9 });
  const payload = outer.find((e) => e.path === 'payload.tar.gz')!;
  const inner = readTar(gunzipSync(payload.data), { maxEntries: 1e5, maxEntryBytes: 1e9, maxTotalBytes: 1e9 });
  const evil = inner.map((e) => ({
    path: e.path,
    typeflag: e.typeflag,
    mode: e.mode,
    data: e.path.endsWith('omflow.mjs') ? Buffer.from('process.exit(0)') : e.data,
  }));
  return gzipSync(writeTar(outer.map((e) => ({ path: e.path, data: e.path === 'payload.tar.gz' ? gzipSync(writeTar(evil)) : e.data }))));
}

describe('patch verification refuses every bad input with its own code', () => {
  const cases: { name: string; bytes: () => Buffer; code: string; opts?: Parameters<typeof verifyPatch>[2] }[] = [
    { name: 'tampered archive (payload replaced, manifest kept)', bytes: () => tamperPayload(fixturePatch(key, '2.0.0', 2)), code: 'AGENT_ERR_PATCH_TAMPERED' },
    { name: 'signed with a key that is not trusted', bytes: () => fixturePatch(other, '2.0.0', 2), code: 'AGENT_ERR_PATCH_UNTRUSTED_KEY' },
    {
      name: 'manifest edited after signing',
      bytes: () => {
        const outer = readTar(gunzipSync(fixturePatch(key, '2.0.0', 2)), { maxEntries: 10, maxEntryBytes: 1e9, maxTotalBytes: 1e9 });
        return gzipSync(
          writeTar(
            outer.map((e) => ({ path: e.path, data: e.path === 'manifest.json' ? Buffer.from(e.data.toString().replace('"2.0.0"', '"9.0.0"')) : e.data })),
          ),
        );
      },
      code: 'AGENT_ERR_PATCH_SIGNATURE',
    },
    { name: 'replayed older sequence', bytes: () => fixturePatch(key, '1.5.0', 3), code: 'AGENT_ERR_PATCH_SEQUENCE_REPLAY', opts: { minSequenceExclusive: 3 } },
    { name: '../ path', bytes: () => hostile([{ path: '../escape.txt', data: Buffer.from('x') }]), code: 'AGENT_ERR_PATCH_PATH_TRAVERSAL' },
    { name: 'nested ../ path', bytes: () => hostile([{ path: 'server/../../escape.txt', data: Buffer.from('x') }]), code: 'AGENT_ERR_PATCH_PATH_TRAVERSAL' },
    { name: 'absolute path', bytes: () => hostile([{ path: '/tmp/omflow-absolute.txt', data: Buffer.from('x') }]), code: 'AGENT_ERR_PATCH_ABSOLUTE_PATH' },
    { name: 'symlink', bytes: () => hostile([{ path: 'server/link', typeflag: '2', linkname: '/etc/passwd' }]), code: 'AGENT_ERR_PATCH_SYMLINK' },
    { name: 'hardlink', bytes: () => hostile([{ path: 'server/hard', typeflag: '1', linkname: 'package.json' }]), code: 'AGENT_ERR_PATCH_HARDLINK' },
    { name: 'character device', bytes: () => hostile([{ path: 'server/dev', typeflag: '3' }]), code: 'AGENT_ERR_PATCH_ENTRY_TYPE' },
    {
      name: 'oversized entry',
      bytes: () => hostile([{ path: 'server/big.bin', data: Buffer.alloc(4096, 1) }]),
      code: 'AGENT_ERR_PATCH_ENTRY_TOO_LARGE',
      opts: { limits: { maxEntries: 100, maxEntryBytes: 2048, maxTotalBytes: 1e8 } },
    },
    {
      name: 'too many entries',
      bytes: () => hostile(Array.from({ length: 30 }, (_, i) => ({ path: `server/f${i}.txt`, data: Buffer.from('x') }))),
      code: 'AGENT_ERR_PATCH_TOO_MANY_ENTRIES',
      opts: { limits: { maxEntries: 10, maxEntryBytes: 1e6, maxTotalBytes: 1e8 } },
    },
    {
      name: 'total size over the cap (gzip bomb)',
      bytes: () => hostile([{ path: 'server/zeros.bin', data: Buffer.alloc(3_000_000) }]),
      code: 'AGENT_ERR_PATCH_TOO_LARGE',
      opts: { limits: { maxEntries: 100, maxEntryBytes: 1e8, maxTotalBytes: 100_000 } },
    },
    {
      name: 'file not in the signed list',
      bytes: () =>
        buildPatch({
          version: '2.0.0',
          sequence: 2,
          privateKey: key.privateKey,
          entries: fixtureEntries({ extra: [{ path: 'server/x.js', data: Buffer.from('1') }] }),
          files: [],
        }).bytes,
      code: 'AGENT_ERR_PATCH_FILE_LIST',
    },
    {
      name: 'not a release',
      bytes: () => buildPatch({ version: '2.0.0', sequence: 2, privateKey: key.privateKey, entries: [{ path: 'a.txt', data: Buffer.from('a') }] }).bytes,
      code: 'AGENT_ERR_PATCH_NOT_A_RELEASE',
    },
    { name: 'not a patch at all', bytes: () => gzipSync(Buffer.from('hello')), code: 'AGENT_ERR_PATCH_FORMAT' },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const bytes = c.bytes();
      let code: string | undefined;
      try {
        verifyPatch(bytes, trusted, c.opts);
      } catch (err) {
        code = (err as { code?: string }).code;
      }
      expect(code).toBe(c.code);
    });
  }

  it('the eight must-show refusals each have their own code', () => {
    const must = [
      'tampered archive (payload replaced, manifest kept)',
      'signed with a key that is not trusted',
      'replayed older sequence',
      '../ path',
      'absolute path',
      'symlink',
      'hardlink',
      'oversized entry',
    ];
    expect(new Set(cases.filter((c) => must.includes(c.name)).map((c) => c.code)).size).toBe(8);
  });
});

describe('a good patch', () => {
  it('verifies and extracts exactly the signed files into staging', () => {
    const bytes = fixturePatch(key, '2.0.0', 2);
    const v = verifyPatch(bytes, trusted, { minSequenceExclusive: 1 });
    expect(v.manifest.version).toBe('2.0.0');
    expect(v.manifest.keyId).toBe(key.keyId);
    const staging = join(tmp, 'staging-good');
    extractToStaging(v, staging);
    expect(readdirSync(staging).sort()).toEqual(['common', 'package.json', 'server']);
    expect(existsSync(join(staging, 'common', 'bin', 'omflow.mjs'))).toBe(true);
  });

  it('identical trees build identical payloads (reproducible)', () => {
    const a = buildPatch({ version: '2.0.0', sequence: 2, privateKey: key.privateKey, entries: fixtureEntries(), createdAt: new Date(0) });
    const b = buildPatch({ version: '2.0.0', sequence: 2, privateKey: key.privateKey, entries: fixtureEntries(), createdAt: new Date(0) });
    expect(a.manifest.payload).toEqual(b.manifest.payload);
  });
});

describe('the agent install path: a refused patch writes nothing and leaves the running release alone', () => {
  it.each([
    ['../ path', () => hostile([{ path: '../../outside.txt', data: Buffer.from('x') }]), 'AGENT_ERR_PATCH_PATH_TRAVERSAL'],
    ['absolute path', () => hostile([{ path: `${tmp}/absolute.txt`, data: Buffer.from('x') }]), 'AGENT_ERR_PATCH_ABSOLUTE_PATH'],
    ['symlink', () => hostile([{ path: 'server/link', typeflag: '2', linkname: '../../..' }]), 'AGENT_ERR_PATCH_SYMLINK'],
    ['hardlink', () => hostile([{ path: 'server/hard', typeflag: '1', linkname: '/etc/passwd' }]), 'AGENT_ERR_PATCH_HARDLINK'],
    ['tampered', () => tamperPayload(fixturePatch(key, '2.0.0', 2)), 'AGENT_ERR_PATCH_TAMPERED'],
    ['wrong key', () => fixturePatch(other, '2.0.0', 2), 'AGENT_ERR_PATCH_UNTRUSTED_KEY'],
  ])('%s', (_name, make, code) => {
    const dataDir = mkdtempSync(join(tmp, 'node-'));
    const store = new ReleaseStore(dataDir, { keep: 3 });
    store.bootstrap(FIXTURE_RELEASE);
    const snapshot = () => listTree(tmp);
    const before = snapshot();
    let got: string | undefined;
    try {
      store.install(verifyPatch(make(), trusted, { minSequenceExclusive: store.current()!.sequence }));
    } catch (err) {
      got = (err as { code?: string }).code;
    }
    expect(got).toBe(code);
    expect(snapshot()).toEqual(before);
    expect(store.currentVersion()).toBe('0.0.1');
  });
});

function listTree(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(p);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out.sort();
}
