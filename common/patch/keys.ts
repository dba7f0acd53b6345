import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { PatchErrors } from './errors.js';

/**
 * Patch signing keys. A key id is the first 16 hex digits of sha256(SPKI DER) of the public key,
 * so it is derived, never asserted: a manifest naming a key id we trust must verify with it.
 */
export interface TrustedKeys {
  readonly keys: ReadonlyMap<string, KeyObject>;
}

/** The vendor's patch key, pinned in code (its private half never leaves the vendor). */
export const VENDOR_PATCH_KEYS: Readonly<Record<string, string>> = Object.freeze({
  ec0990f576bad9a4: 'MCowBQYDK2VwAyEA4YKFenTcM8KkerzsXfxEyvlsujzt6ghiyYO9KKoCSks=',
});

export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

function publicFromSpkiB64(b64: string): KeyObject {
  const key = createPublicKey({ key: Buffer.from(b64, 'base64'), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'ed25519') throw PatchErrors.AGENT_ERR_KEY_INVALID('not an Ed25519 key');
  return key;
}

/**
 * Builds the trusted key set: the pinned vendor key(s) plus `entries` (OMFLOW_PATCH_TRUSTED_KEYS),
 * each `keyId=base64(SPKI DER)` or the path of a public-key PEM file.
 */
export function loadTrustedKeys(entries: readonly string[], opts: { includeVendor?: boolean; readFile?: (p: string) => string } = {}): TrustedKeys {
  const keys = new Map<string, KeyObject>();
  const read = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  if (opts.includeVendor !== false)
    for (const b64 of Object.values(VENDOR_PATCH_KEYS)) {
      const k = publicFromSpkiB64(b64);
      keys.set(keyIdOf(k), k);
    }
  for (const entry of entries) {
    try {
      const m = /^([0-9a-f]{16})=([A-Za-z0-9+/=]+)$/.exec(entry);
      const key = m ? publicFromSpkiB64(m[2]) : createPublicKey(read(entry));
      if (key.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 key');
      const id = keyIdOf(key);
      if (m && m[1] !== id) throw new Error(`key id ${m[1]} does not match the key (${id})`);
      keys.set(id, key);
    } catch (err) {
      if (PatchErrors.AGENT_ERR_KEY_INVALID.is(err)) throw err;
      throw PatchErrors.AGENT_ERR_KEY_INVALID(`trusted key "${entry.slice(0, 40)}": ${(err as Error).message}`, undefined, { cause: err });
    }
  }
  return { keys };
}

export interface GeneratedKeyPair {
  keyId: string;
  privatePem: string;
  publicPem: string;
  /** `keyId=base64` form for OMFLOW_PATCH_TRUSTED_KEYS. */
  trustedEntry: string;
}

export function generatePatchKeyPair(): GeneratedKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const keyId = keyIdOf(publicKey);
  const spki = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  return {
    keyId,
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    trustedEntry: `${keyId}=${spki}`,
  };
}

export function readPrivateKey(pem: string): KeyObject {
  try {
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 key');
    return key;
  } catch (err) {
    throw PatchErrors.AGENT_ERR_KEY_INVALID(`private key: ${(err as Error).message}`, undefined, { cause: err });
  }
}
