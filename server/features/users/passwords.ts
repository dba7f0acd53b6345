import { createHash, randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * Password hashes: scrypt from node:crypto at OWASP's listed minimum, N=2^17, r=8,
 * p=1, stored as `scrypt$N$r$p$salt$hash` (base64) so the parameters travel with the hash and an
 * older hash is recognised and replaced at the next successful login.
 */
export const SCRYPT_PARAMS = { N: 2 ** 17, r: 8, p: 1, keylen: 64 };

/** The largest N a stored hash may ask for: a corrupt or hostile row must not allocate gigabytes. */
const MAX_N = 2 ** 20;

/** scrypt's working memory is 128·r·(N+2) + 128·r·p bytes (OpenSSL refuses a maxmem below it): 128 MiB at our parameters. */
export function scryptMemoryBytes(N: number, r: number, p: number): number {
  return 128 * r * (N + 2) + 128 * r * p;
}

export interface PasswordHasher {
  hash(password: string): Promise<string>;
  verify(password: string, stored: string): Promise<boolean>;
  /** The stored hash was made with other parameters than today's: hash the password again after it verified. */
  needsRehash(stored: string): boolean;
  /** Hashes running now and waiting for a slot (tests and the bench read it). */
  readonly load: { running: number; waiting: number };
}

interface Parsed {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function parse(stored: string): Parsed | null {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  if (!Number.isInteger(N) || !Number.isInteger(r) || !Number.isInteger(p) || N < 2 || N > MAX_N || (N & (N - 1)) !== 0 || r < 1 || r > 32 || p < 1 || p > 16)
    return null;
  const hash = Buffer.from(parts[5], 'base64');
  return hash.length >= 16 ? { N, r, p, salt: Buffer.from(parts[4], 'base64'), hash } : null;
}

/**
 * The hasher of one process. Every hash holds 128 MiB and a libuv thread (shared with file,
 * DNS and zlib work) for a few hundred milliseconds, so at most `concurrency` run at once and
 * the rest wait in order: memory stays bounded under a burst of logins, and the thread pool
 * keeps room for everything else the server does.
 */
export function createPasswordHasher(opts: { concurrency: number; params?: typeof SCRYPT_PARAMS }): PasswordHasher {
  const params = opts.params ?? SCRYPT_PARAMS;
  const load = { running: 0, waiting: 0 };
  const queue: (() => void)[] = [];

  async function slot<T>(fn: () => Promise<T>): Promise<T> {
    if (load.running >= opts.concurrency) {
      load.waiting++;
      await new Promise<void>((resolve) => queue.push(resolve));
      load.waiting--;
    } else load.running++;
    try {
      return await fn();
    } finally {
      // The slot passes straight to the next waiter (running stays the same), else it frees up.
      const next = queue.shift();
      if (next) next();
      else load.running--;
    }
  }

  const derive = (password: string, salt: Buffer, keylen: number, { N, r, p }: { N: number; r: number; p: number }) =>
    slot(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          const o: ScryptOptions = { N, r, p, maxmem: scryptMemoryBytes(N, r, p) + 1024 * 1024 };
          scrypt(password, salt, keylen, o, (err, key) => (err ? reject(err) : resolve(key)));
        }),
    );

  return {
    load,
    async hash(password) {
      const salt = randomBytes(16);
      const key = await derive(password, salt, params.keylen, params);
      return `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64')}$${key.toString('base64')}`;
    },
    async verify(password, stored) {
      const h = parse(stored);
      if (!h) return false;
      const key = await derive(password, h.salt, h.hash.length, h);
      return timingSafeEqual(key, h.hash);
    },
    needsRehash(stored) {
      const h = parse(stored);
      return !h || h.N !== params.N || h.r !== params.r || h.p !== params.p || h.hash.length !== params.keylen;
    },
  };
}

/**
 * Compared against when the user does not exist or is disabled, at today's parameters, so the
 * answer takes as long as for a real account and timing does not reveal user names.
 */
export function dummyHash(params = SCRYPT_PARAMS): string {
  return `scrypt$${params.N}$${params.r}$${params.p}$${Buffer.alloc(16).toString('base64')}$${Buffer.alloc(params.keylen).toString('base64')}`;
}

export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}
