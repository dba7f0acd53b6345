import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { type LicensePayload, signLicense } from '../../common/license/index.js';

/** A key pair made by the test and injected into the verifier (never the vendor's pinned key). */
export function testKeyPair(keyId = 'test-key-1'): { keyId: string; privateKey: KeyObject; publicPem: string; keys: Record<string, string> } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  return { keyId, privateKey, publicPem, keys: { [keyId]: publicPem } };
}

export const DAY = 86_400_000;

export function payload(over: Partial<LicensePayload> = {}, base = Date.now()): LicensePayload {
  return {
    v: 1,
    licenseId: 'lic-0001',
    keyId: 'test-key-1',
    customer: 'ACME K.K.',
    issuedAt: new Date(base - DAY).toISOString(),
    notBefore: new Date(base - DAY).toISOString(),
    expiresAt: new Date(base + 365 * DAY).toISOString(),
    graceDays: 14,
    clusterId: null,
    limits: { maxServers: 4 },
    features: ['ha', 'patches'],
    ...over,
  };
}

export function issue(pair: { privateKey: KeyObject }, over: Partial<LicensePayload> = {}, base?: number): string {
  return signLicense(payload(over, base), pair.privateKey);
}

/** Flips one character inside the signed payload (keeps it valid base64 and valid JSON). */
export function tamper(text: string): string {
  const file = JSON.parse(text);
  const p = JSON.parse(Buffer.from(file.payload, 'base64').toString('utf8'));
  p.limits.maxServers = 999;
  file.payload = Buffer.from(JSON.stringify(p)).toString('base64');
  return JSON.stringify(file);
}
