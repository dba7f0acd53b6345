import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { LicenseErrors } from './errors.js';
import { type LicensePayload, parseLicenseFile } from './format.js';
import { PINNED_LICENSE_KEYS } from './keys.js';

const DAY_MS = 86_400_000;

export interface VerifiedLicense extends LicensePayload {
  /** The file's text exactly as uploaded; stored so every booster verifies it again itself. */
  text: string;
}

export interface LicenseVerifier {
  /** Parses and checks the signature against the pinned key named by keyId. Throws LicenseErrors. */
  verify(text: string | Buffer): VerifiedLicense;
  /** Checks validity at `now` for `clusterId`; throws NOT_YET_VALID, EXPIRED (past grace) or WRONG_CLUSTER. */
  check(license: LicensePayload, at: { now: Date; clusterId: string | null }): void;
  /** verify + check: what an upload must pass. */
  verifyForCluster(text: string | Buffer, at: { now: Date; clusterId: string | null }): VerifiedLicense;
  keyIds(): string[];
}

/**
 * Offline verification. The keys come through the constructor (key id → SPKI PEM or KeyObject):
 * production uses the pinned vendor keys, tests inject a pair they generated.
 */
export function createLicenseVerifier(opts: { keys?: Readonly<Record<string, string | KeyObject>> } = {}): LicenseVerifier {
  const keys = new Map<string, KeyObject>();
  for (const [id, key] of Object.entries(opts.keys ?? PINNED_LICENSE_KEYS)) {
    const k = typeof key === 'string' ? createPublicKey(key) : key;
    if (k.asymmetricKeyType !== 'ed25519') throw new TypeError(`license key ${id} is not an Ed25519 public key`);
    keys.set(id, k);
  }

  const self: LicenseVerifier = {
    verify(text) {
      const parsed = parseLicenseFile(text);
      const key = keys.get(parsed.payload.keyId);
      if (!key) throw LicenseErrors.COMMON_ERR_LICENSE_UNKNOWN_KEY(undefined, { keyId: parsed.payload.keyId });
      let ok = false;
      try {
        ok = verify(null, parsed.payloadBytes, key, parsed.signature);
      } catch {
        ok = false;
      }
      if (!ok) throw LicenseErrors.COMMON_ERR_LICENSE_BAD_SIGNATURE(undefined, { keyId: parsed.payload.keyId });
      return { ...parsed.payload, text: typeof text === 'string' ? text : text.toString('utf8') };
    },
    check(license, at) {
      if (at.now.getTime() < Date.parse(license.notBefore)) throw LicenseErrors.COMMON_ERR_LICENSE_NOT_YET_VALID(undefined, { notBefore: license.notBefore });
      if (license.expiresAt !== null && at.now.getTime() >= Date.parse(license.expiresAt) + license.graceDays * DAY_MS)
        throw LicenseErrors.COMMON_ERR_LICENSE_EXPIRED(undefined, { expiresAt: license.expiresAt, graceDays: license.graceDays });
      if (license.clusterId !== null && license.clusterId !== at.clusterId)
        throw LicenseErrors.COMMON_ERR_LICENSE_WRONG_CLUSTER(undefined, { licenseClusterId: license.clusterId, clusterId: at.clusterId });
    },
    verifyForCluster(text, at) {
      const lic = self.verify(text);
      self.check(lic, at);
      return lic;
    },
    keyIds: () => [...keys.keys()],
  };
  return self;
}
