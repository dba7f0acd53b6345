import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { PatchErrors } from './errors.js';
import { keyIdOf, type TrustedKeys } from './keys.js';
import { type RawTarEntry, readTar, type TarEntry, type TarLimits, writeTar } from './tar.js';

/**
 * Patch container (ADR in agent/README.md): an outer tar.gz holding exactly
 *   manifest.json    — the signed bytes (UTF-8 JSON, see PatchManifest)
 *   manifest.sig     — base64 Ed25519 signature over the exact bytes of manifest.json
 *   payload.tar.gz   — the release tree: regular files and directories only
 * The manifest carries the payload's sha256 and size and every file's path, sha256, size and
 * mode, so a verifier needs nothing but the trusted public keys.
 */
export const PATCH_FORMAT = 'omflow-patch/1';
export const RELEASE_ENTRY = 'common/bin/omflow.mjs';
export const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

export interface ManifestFile {
  path: string;
  sha256: string;
  size: number;
  /** 0o644 or 0o755 (decimal in JSON). */
  mode: number;
}

export interface PatchManifest {
  format: typeof PATCH_FORMAT;
  version: string;
  sequence: number;
  keyId: string;
  createdAt: string;
  payload: { sha256: string; size: number };
  files: ManifestFile[];
}

export interface VerifiedPatch {
  manifest: PatchManifest;
  manifestBytes: Buffer;
  signatureB64: string;
  /** sha256 of the whole patch file (what is stored in the database). */
  archiveSha256: string;
  archiveSize: number;
  /** Checked, normalised payload entries, ready for extraction. */
  entries: TarEntry[];
}

export const DEFAULT_LIMITS: TarLimits = { maxEntries: 50_000, maxEntryBytes: 64 * 1024 * 1024, maxTotalBytes: 512 * 1024 * 1024 };

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const normMode = (mode: number) => (mode & 0o111 ? 0o755 : 0o644);

/** Relative, normalised, safe path, or a typed refusal. */
export function safeRelativePath(raw: string): string {
  if (raw.includes('\0')) throw PatchErrors.AGENT_ERR_PATCH_FORMAT('path holds a NUL byte');
  if (raw.startsWith('/') || raw.startsWith('\\') || /^[A-Za-z]:[\\/]/.test(raw))
    throw PatchErrors.AGENT_ERR_PATCH_ABSOLUTE_PATH(`absolute path "${raw}"`, { path: raw });
  const parts = raw.split(/[\\/]/);
  if (parts.includes('..')) throw PatchErrors.AGENT_ERR_PATCH_PATH_TRAVERSAL(`path "${raw}" climbs out with ".."`, { path: raw });
  if (raw.includes('\\')) throw PatchErrors.AGENT_ERR_PATCH_FORMAT(`path "${raw}" holds a backslash`, { path: raw });
  const clean = parts.filter((p) => p !== '' && p !== '.');
  if (clean.length === 0) throw PatchErrors.AGENT_ERR_PATCH_FORMAT('empty path in payload');
  return clean.join('/');
}

// ---------------------------------------------------------------- build

/** Entries of a release directory: regular files and directories, sorted; node_modules and .git skipped. */
export function collectDirectory(dir: string, skip: readonly string[] = ['node_modules', '.git']): RawTarEntry[] {
  const out: RawTarEntry[] = [];
  const walk = (abs: string) => {
    for (const name of readdirSync(abs).sort()) {
      if (skip.includes(name)) continue;
      const full = join(abs, name);
      const rel = relative(dir, full).split(sep).join('/');
      const st = lstatSync(full);
      if (st.isDirectory()) {
        out.push({ path: `${rel}/`, typeflag: '5', mode: 0o755 });
        walk(full);
      } else if (st.isFile()) {
        out.push({ path: rel, typeflag: '0', mode: normMode(st.mode), data: readFileSync(full) });
      } else {
        throw PatchErrors.AGENT_ERR_PATCH_SYMLINK(`"${rel}" is not a regular file or directory; patches hold neither links nor devices`, { path: rel });
      }
    }
  };
  walk(dir);
  return out;
}

export interface BuildPatchOptions {
  version: string;
  sequence: number;
  privateKey: KeyObject;
  entries: RawTarEntry[];
  /** Signed file list; computed from the regular-file entries when omitted (tests override it). */
  files?: ManifestFile[];
  createdAt?: Date;
}

export function buildPatch(opts: BuildPatchOptions): { bytes: Buffer; manifest: PatchManifest } {
  if (!VERSION_PATTERN.test(opts.version)) throw PatchErrors.AGENT_ERR_PATCH_FORMAT(`version "${opts.version}" must match ${VERSION_PATTERN}`);
  if (!Number.isSafeInteger(opts.sequence) || opts.sequence < 1) throw PatchErrors.AGENT_ERR_PATCH_FORMAT('sequence must be an integer >= 1');
  const payload = gzipSync(writeTar(opts.entries), { level: 9 });
  const files =
    opts.files ??
    opts.entries
      .filter((e) => (e.typeflag ?? '0') === '0')
      .map((e) => ({ path: e.path, sha256: sha256(e.data ?? Buffer.alloc(0)), size: (e.data ?? Buffer.alloc(0)).length, mode: normMode(e.mode ?? 0o644) }));
  const manifest: PatchManifest = {
    format: PATCH_FORMAT,
    version: opts.version,
    sequence: opts.sequence,
    keyId: keyIdOf(createPublicKey(opts.privateKey)),
    createdAt: (opts.createdAt ?? new Date()).toISOString(),
    payload: { sha256: sha256(payload), size: payload.length },
    files,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 1), 'utf8');
  const signature = sign(null, manifestBytes, opts.privateKey).toString('base64');
  const outer = writeTar([
    { path: 'manifest.json', data: manifestBytes },
    { path: 'manifest.sig', data: Buffer.from(signature) },
    { path: 'payload.tar.gz', data: payload },
  ]);
  return { bytes: gzipSync(outer), manifest };
}

// ---------------------------------------------------------------- verify

function gunzipCapped(buf: Buffer, cap: number, what: string): Buffer {
  try {
    return gunzipSync(buf, { maxOutputLength: cap });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError)
      throw PatchErrors.AGENT_ERR_PATCH_TOO_LARGE(`${what} unpacks to more than ${cap} bytes`);
    throw PatchErrors.AGENT_ERR_PATCH_FORMAT(`${what} is not gzip data`, undefined, { cause: err });
  }
}

function parseManifest(bytes: Buffer): PatchManifest {
  let m: PatchManifest;
  try {
    m = JSON.parse(bytes.toString('utf8')) as PatchManifest;
  } catch {
    throw PatchErrors.AGENT_ERR_PATCH_FORMAT('manifest.json is not JSON');
  }
  const hex = /^[0-9a-f]{64}$/;
  const ok =
    m &&
    m.format === PATCH_FORMAT &&
    typeof m.version === 'string' &&
    VERSION_PATTERN.test(m.version) &&
    Number.isSafeInteger(m.sequence) &&
    m.sequence >= 1 &&
    typeof m.keyId === 'string' &&
    m.payload &&
    hex.test(m.payload.sha256) &&
    Number.isSafeInteger(m.payload.size) &&
    Array.isArray(m.files) &&
    m.files.every((f) => f && typeof f.path === 'string' && hex.test(f.sha256) && Number.isSafeInteger(f.size) && (f.mode === 0o644 || f.mode === 0o755));
  if (!ok) throw PatchErrors.AGENT_ERR_PATCH_FORMAT(`manifest.json is not a ${PATCH_FORMAT} manifest`);
  return m;
}

export interface VerifyOptions {
  limits?: TarLimits;
  /** Refuse sequences <= this (the installed or newest applied sequence). */
  minSequenceExclusive?: number;
}

/**
 * Verifies a patch file completely in memory: container, signature by a trusted key, payload
 * sha256 and size, then every payload entry (type, path, caps) and the signed file list.
 * Nothing is written anywhere. Throws one AGENT_ERR_PATCH_* code per kind of refusal.
 */
export function verifyPatch(bytes: Buffer, trusted: TrustedKeys, opts: VerifyOptions = {}): VerifiedPatch {
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const outerCap = limits.maxTotalBytes + 64 * 1024 * 1024;
  const outer = readTar(gunzipCapped(bytes, outerCap, 'patch file'), { maxEntries: 16, maxEntryBytes: outerCap, maxTotalBytes: outerCap });
  const byName = new Map(outer.map((e) => [e.path, e]));
  const names = outer
    .map((e) => e.path)
    .sort()
    .join(',');
  if (names !== 'manifest.json,manifest.sig,payload.tar.gz' || outer.some((e) => e.type !== 'file'))
    throw PatchErrors.AGENT_ERR_PATCH_FORMAT(`patch container holds [${names}]`);
  const manifestBytes = byName.get('manifest.json')!.data;
  const signatureB64 = byName.get('manifest.sig')!.data.toString('utf8').trim();
  const payload = byName.get('payload.tar.gz')!.data;
  const manifest = parseManifest(manifestBytes);

  const key = trusted.keys.get(manifest.keyId);
  if (!key) throw PatchErrors.AGENT_ERR_PATCH_UNTRUSTED_KEY(`key ${manifest.keyId} is not trusted`, { keyId: manifest.keyId });
  let good = false;
  try {
    good = /^[A-Za-z0-9+/]+={0,2}$/.test(signatureB64) && verify(null, manifestBytes, key, Buffer.from(signatureB64, 'base64'));
  } catch {
    good = false;
  }
  if (!good) throw PatchErrors.AGENT_ERR_PATCH_SIGNATURE(undefined, { keyId: manifest.keyId });
  if (payload.length !== manifest.payload.size || sha256(payload) !== manifest.payload.sha256)
    throw PatchErrors.AGENT_ERR_PATCH_TAMPERED(undefined, { expected: manifest.payload, actual: { size: payload.length, sha256: sha256(payload) } });
  if (opts.minSequenceExclusive !== undefined && manifest.sequence <= opts.minSequenceExclusive)
    throw PatchErrors.AGENT_ERR_PATCH_SEQUENCE_REPLAY(`sequence ${manifest.sequence} is not greater than ${opts.minSequenceExclusive}`, {
      sequence: manifest.sequence,
      installed: opts.minSequenceExclusive,
    });

  const raw = readTar(gunzipCapped(payload, limits.maxTotalBytes + limits.maxEntries * 1024 + 1024 * 1024, 'payload'), limits);
  const entries: TarEntry[] = [];
  const seen = new Set<string>();
  for (const e of raw) {
    const path = safeRelativePath(e.path);
    if (e.type === 'symlink') throw PatchErrors.AGENT_ERR_PATCH_SYMLINK(`"${path}" is a symbolic link`, { path, target: e.linkname });
    if (e.type === 'hardlink') throw PatchErrors.AGENT_ERR_PATCH_HARDLINK(`"${path}" is a hard link`, { path, target: e.linkname });
    if (e.type === 'other') throw PatchErrors.AGENT_ERR_PATCH_ENTRY_TYPE(`"${path}" has tar type "${e.typeflag}"`, { path, typeflag: e.typeflag });
    if (path === 'node_modules' || path.startsWith('node_modules/') || path === RELEASE_META)
      throw PatchErrors.AGENT_ERR_PATCH_FILE_LIST(`"${path}" is reserved for the agent`, { path });
    if (seen.has(path)) throw PatchErrors.AGENT_ERR_PATCH_FILE_LIST(`"${path}" appears twice`, { path });
    seen.add(path);
    entries.push({ ...e, path, mode: e.type === 'dir' ? 0o755 : normMode(e.mode) });
  }
  compareFileList(
    manifest.files,
    entries.filter((e) => e.type === 'file').map((e) => ({ path: e.path, sha256: sha256(e.data), size: e.data.length, mode: e.mode })),
  );
  if (!entries.some((e) => e.type === 'file' && e.path === RELEASE_ENTRY)) throw PatchErrors.AGENT_ERR_PATCH_NOT_A_RELEASE(`${RELEASE_ENTRY} is missing`);
  return { manifest, manifestBytes, signatureB64, archiveSha256: sha256(bytes), archiveSize: bytes.length, entries };
}

function compareFileList(signed: ManifestFile[], actual: ManifestFile[]): void {
  const want = new Map(signed.map((f) => [f.path, f]));
  if (want.size !== signed.length) throw PatchErrors.AGENT_ERR_PATCH_FILE_LIST('signed file list names a path twice');
  const problems: string[] = [];
  for (const f of actual) {
    const w = want.get(f.path);
    if (!w) problems.push(`extra file ${f.path}`);
    else if (w.sha256 !== f.sha256 || w.size !== f.size || w.mode !== f.mode) problems.push(`${f.path} differs`);
    want.delete(f.path);
  }
  for (const p of want.keys()) problems.push(`missing file ${p}`);
  if (problems.length) throw PatchErrors.AGENT_ERR_PATCH_FILE_LIST(`${problems.slice(0, 5).join('; ')}`, { problems: problems.slice(0, 50) });
}

// ---------------------------------------------------------------- extract

/** Name of the release metadata file the agent writes into every release directory. */
export const RELEASE_META = '.omflow-release.json';

/**
 * Writes a verified patch into `stagingDir` (which must not exist; its parent must), then walks
 * the result and compares it with the signed file list again: only directories and regular
 * files, exactly the signed paths, hashes and modes. Files are created with O_EXCL.
 */
export function extractToStaging(patch: VerifiedPatch, stagingDir: string): void {
  mkdirSync(stagingDir, { mode: 0o755 });
  for (const e of patch.entries) {
    const target = join(stagingDir, ...e.path.split('/'));
    if (!target.startsWith(stagingDir + sep)) throw PatchErrors.AGENT_ERR_PATCH_PATH_TRAVERSAL(`"${e.path}" leaves staging`);
    if (e.type === 'dir') {
      mkdirSync(target, { recursive: true, mode: 0o755 });
    } else {
      mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
      writeFileSync(target, e.data, { flag: 'wx', mode: e.mode });
    }
  }
  const found: ManifestFile[] = [];
  const walk = (abs: string) => {
    for (const name of readdirSync(abs)) {
      const full = join(abs, name);
      const st = lstatSync(full);
      const rel = relative(stagingDir, full).split(sep).join('/');
      if (st.isDirectory()) walk(full);
      else if (st.isFile()) {
        const data = readFileSync(full);
        found.push({ path: rel, sha256: sha256(data), size: data.length, mode: normMode(st.mode) });
      } else throw PatchErrors.AGENT_ERR_PATCH_ENTRY_TYPE(`"${rel}" in staging is neither file nor directory`);
    }
  };
  walk(stagingDir);
  compareFileList(patch.manifest.files, found);
}

/** Reads the manifest of a patch file without trusting it (for display only). */
export function peekManifest(bytes: Buffer): PatchManifest {
  const outer = readTar(gunzipCapped(bytes, DEFAULT_LIMITS.maxTotalBytes, 'patch file'), {
    maxEntries: 16,
    maxEntryBytes: DEFAULT_LIMITS.maxTotalBytes,
    maxTotalBytes: DEFAULT_LIMITS.maxTotalBytes,
  });
  const m = outer.find((e) => e.path === 'manifest.json');
  if (!m) throw PatchErrors.AGENT_ERR_PATCH_FORMAT('manifest.json is missing');
  return parseManifest(m.data);
}
