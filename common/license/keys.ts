/**
 * The vendor's Ed25519 public keys, pinned in the code by key id. Rotating the vendor key is
 * a release: add the new id here, keep the old one until every license it signed has expired.
 * These are not operator settings on purpose: whoever controls the configuration must not be
 * able to mint licenses. Tests pass their own keys to createLicenseVerifier instead.
 */
export const PINNED_LICENSE_KEYS: Readonly<Record<string, string>> = Object.freeze({
  'omflow-vendor-2026-1': ['-----BEGIN PUBLIC KEY-----', 'MCowBQYDK2VwAyEApvtGCwqgh7jYHh1LBjb6l53GD10xFjXMwym2aTx2w6o=', '-----END PUBLIC KEY-----', ''].join(
    '\n',
  ),
});
