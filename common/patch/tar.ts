import { PatchErrors } from './errors.js';

/**
 * A deliberately small ustar reader/writer. We parse entries ourselves (instead of handing
 * the archive to a general extractor) so that every entry is classified and checked in memory
 * before a single byte reaches the disk: only regular files and directories are accepted.
 */
export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other';

export interface TarEntry {
  path: string;
  type: TarEntryType;
  mode: number;
  data: Buffer;
  /** Raw typeflag character, for error details. */
  typeflag: string;
  linkname?: string;
}

export interface TarLimits {
  maxEntries: number;
  maxEntryBytes: number;
  maxTotalBytes: number;
}

const BLOCK = 512;

function writeString(buf: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  if (bytes.length > length) throw new RangeError(`tar field too long: ${value}`);
  bytes.copy(buf, offset);
}

function writeOctal(buf: Buffer, offset: number, length: number, value: number): void {
  writeString(buf, offset, length, `${value.toString(8).padStart(length - 1, '0')}\0`);
}

/** Raw entry for the writer: tests use it to build hostile archives (links, devices, ../). */
export interface RawTarEntry {
  path: string;
  typeflag?: string;
  mode?: number;
  data?: Buffer;
  linkname?: string;
}

function header(e: RawTarEntry, size: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  let name = e.path;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', 155);
    if (cut <= 0 || Buffer.byteLength(name.slice(cut + 1)) > 100) throw new RangeError(`path too long for ustar: ${name}`);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  writeString(h, 0, 100, name);
  writeOctal(h, 100, 8, e.mode ?? 0o644);
  writeOctal(h, 108, 8, 0);
  writeOctal(h, 116, 8, 0);
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, 0); // mtime 0: identical trees give identical archives
  h.fill(0x20, 148, 156);
  writeString(h, 156, 1, e.typeflag ?? '0');
  writeString(h, 157, 100, e.linkname ?? '');
  writeString(h, 257, 6, 'ustar\0');
  writeString(h, 263, 2, '00');
  writeString(h, 345, 155, prefix);
  let sum = 0;
  for (const b of h) sum += b;
  writeString(h, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return h;
}

export function writeTar(entries: RawTarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    const isData = (e.typeflag ?? '0') === '0';
    parts.push(header(e, isData ? data.length : 0));
    if (isData && data.length > 0) {
      parts.push(data);
      const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
      if (pad) parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}

function readString(buf: Buffer, offset: number, length: number): string {
  const slice = buf.subarray(offset, offset + length);
  const end = slice.indexOf(0);
  return slice.subarray(0, end === -1 ? length : end).toString('utf8');
}

function readOctal(buf: Buffer, offset: number, length: number): number {
  // Base-256 (high bit) sizes are only needed for > 8 GiB entries, which we refuse anyway.
  if (buf[offset] & 0x80) throw PatchErrors.AGENT_ERR_PATCH_ENTRY_TOO_LARGE('tar entry uses a base-256 size');
  const text = readString(buf, offset, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw PatchErrors.AGENT_ERR_PATCH_FORMAT(`bad octal field "${text}" in tar header`);
  return parseInt(text, 8);
}

function classify(flag: string): TarEntryType {
  if (flag === '0' || flag === '\0' || flag === '' || flag === '7') return flag === '7' ? 'other' : 'file';
  if (flag === '5') return 'dir';
  if (flag === '2') return 'symlink';
  if (flag === '1') return 'hardlink';
  return 'other';
}

/** Parses a tar buffer into entries, enforcing count and size caps while reading headers. */
export function readTar(buf: Buffer, limits: TarLimits): TarEntry[] {
  const entries: TarEntry[] = [];
  let offset = 0;
  let total = 0;
  while (offset + BLOCK <= buf.length) {
    const h = buf.subarray(offset, offset + BLOCK);
    if (h.every((b) => b === 0)) return entries;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
    const stored = readOctal(h, 148, 8);
    if (stored !== sum) throw PatchErrors.AGENT_ERR_PATCH_FORMAT('tar header checksum mismatch');
    const flag = String.fromCharCode(h[156]);
    const name = readString(h, 0, 100);
    const magic = readString(h, 257, 6);
    const prefix = magic === 'ustar' ? readString(h, 345, 155) : '';
    const path = prefix ? `${prefix}/${name}` : name;
    const size = readOctal(h, 124, 12);
    const mode = readOctal(h, 100, 8);
    if (entries.length + 1 > limits.maxEntries)
      throw PatchErrors.AGENT_ERR_PATCH_TOO_MANY_ENTRIES(`more than ${limits.maxEntries} entries`, { limit: limits.maxEntries });
    if (size > limits.maxEntryBytes)
      throw PatchErrors.AGENT_ERR_PATCH_ENTRY_TOO_LARGE(`entry "${path}" has ${size} bytes (cap ${limits.maxEntryBytes})`, {
        path,
        size,
        limit: limits.maxEntryBytes,
      });
    total += size;
    if (total > limits.maxTotalBytes)
      throw PatchErrors.AGENT_ERR_PATCH_TOO_LARGE(`payload exceeds ${limits.maxTotalBytes} bytes`, { limit: limits.maxTotalBytes });
    offset += BLOCK;
    if (offset + size > buf.length) throw PatchErrors.AGENT_ERR_PATCH_FORMAT('tar archive is truncated');
    const data = Buffer.from(buf.subarray(offset, offset + size));
    offset += Math.ceil(size / BLOCK) * BLOCK;
    entries.push({ path, type: classify(flag), mode, data, typeflag: flag, linkname: readString(h, 157, 100) || undefined });
  }
  if (offset < buf.length) throw PatchErrors.AGENT_ERR_PATCH_FORMAT('tar archive is truncated');
  return entries;
}
