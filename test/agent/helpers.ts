import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { buildPatch, collectDirectory, generatePatchKeyPair, loadTrustedKeys, type RawTarEntry } from '../../common/patch/index.js';

export const FIXTURE_RELEASE = fileURLToPath(new URL('./fixtures/fake-release', import.meta.url));

export interface TestKey {
  keyId: string;
  privateKey: KeyObject;
  privatePem: string;
  trustedEntry: string;
}

export function makeKey(): TestKey {
  const k = generatePatchKeyPair();
  return { keyId: k.keyId, privateKey: createPrivateKey(k.privatePem), privatePem: k.privatePem, trustedEntry: k.trustedEntry };
}

export function trustOnly(...keys: TestKey[]) {
  return loadTrustedKeys(
    keys.map((k) => k.trustedEntry),
    { includeVendor: false },
  );
}

/** The fake release tree, optionally with a fixture mode baked into it (e.g. exit-on-start). */
export function fixtureEntries(opts: { mode?: string; extra?: RawTarEntry[] } = {}): RawTarEntry[] {
  const entries = collectDirectory(FIXTURE_RELEASE);
  if (opts.mode) entries.push({ path: 'fixture-mode.txt', data: Buffer.from(opts.mode) });
  return [...entries, ...(opts.extra ?? [])];
}

export function fixturePatch(key: TestKey, version: string, sequence: number, opts: { mode?: string; extra?: RawTarEntry[] } = {}): Buffer {
  return buildPatch({ version, sequence, privateKey: key.privateKey, entries: fixtureEntries(opts) }).bytes;
}

export const readText = (p: string) => readFileSync(p, 'utf8');
