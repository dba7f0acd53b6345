import { createPrivateKey, type KeyObject, sign } from 'node:crypto';
import { LicenseErrors } from './errors.js';

/**
 * License file format (decision and rationale: booster/license/README.md):
 *
 *   { "format": "omflow-license/1", "payload": "<base64 of the payload bytes>", "signature": "<base64 Ed25519>" }
 *
 * The signature covers the exact payload bytes (UTF-8 JSON), which travel base64-encoded so no
 * editor, database column or JSON re-serialisation can alter what was signed.
 */
export const LICENSE_FILE_FORMAT = 'omflow-license/1';
export const LICENSE_PAYLOAD_VERSION = 1;
/** Upload limit: a real license is well under 2 KiB. */
export const MAX_LICENSE_FILE_BYTES = 16 * 1024;

export interface LicenseLimits {
  /** App servers that get traffic; null = unlimited. */
  maxServers: number | null;
}

export interface LicensePayload {
  v: number;
  licenseId: string;
  keyId: string;
  customer: string;
  issuedAt: string;
  notBefore: string;
  /** null: perpetual. */
  expiresAt: string | null;
  /** Days after expiresAt during which the booster keeps distributing, with a warning. */
  graceDays: number;
  /** null: valid on any cluster. */
  clusterId: string | null;
  limits: LicenseLimits;
  features: string[];
}

export interface ParsedLicenseFile {
  payload: LicensePayload;
  payloadBytes: Buffer;
  signature: Buffer;
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/;

function malformed(detail: string): never {
  throw LicenseErrors.COMMON_ERR_LICENSE_MALFORMED(undefined, { reason: detail });
}

/** Checks the shape of a payload; throws COMMON_ERR_LICENSE_MALFORMED naming the first bad field. */
export function validatePayload(raw: unknown): LicensePayload {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) malformed('payload is not a JSON object');
  const p = raw as Record<string, unknown>;
  if (p.v !== LICENSE_PAYLOAD_VERSION) malformed(`unsupported payload version ${JSON.stringify(p.v)}`);
  for (const f of ['licenseId', 'keyId', 'customer'] as const)
    if (typeof p[f] !== 'string' || !(p[f] as string).trim() || (p[f] as string).length > 255) malformed(`${f} must be a non-empty string`);
  if ((p.licenseId as string).length > 64 || (p.keyId as string).length > 64) malformed('licenseId and keyId are at most 64 characters');
  for (const f of ['issuedAt', 'notBefore'] as const) if (typeof p[f] !== 'string' || !ISO.test(p[f] as string)) malformed(`${f} must be an ISO-8601 UTC time`);
  if (p.expiresAt !== null && (typeof p.expiresAt !== 'string' || !ISO.test(p.expiresAt))) malformed('expiresAt must be an ISO-8601 UTC time or null');
  if (!Number.isInteger(p.graceDays) || (p.graceDays as number) < 0 || (p.graceDays as number) > 365) malformed('graceDays must be an integer 0..365');
  if (p.clusterId !== null && (typeof p.clusterId !== 'string' || !p.clusterId || p.clusterId.length > 64)) malformed('clusterId must be a string or null');
  const limits = p.limits as Record<string, unknown> | undefined;
  if (!limits || typeof limits !== 'object') malformed('limits must be an object');
  if (limits.maxServers !== null && (!Number.isInteger(limits.maxServers) || (limits.maxServers as number) < 1))
    malformed('limits.maxServers must be a positive integer or null');
  if (!Array.isArray(p.features) || p.features.some((f) => typeof f !== 'string')) malformed('features must be an array of strings');
  return {
    v: LICENSE_PAYLOAD_VERSION,
    licenseId: p.licenseId as string,
    keyId: p.keyId as string,
    customer: p.customer as string,
    issuedAt: p.issuedAt as string,
    notBefore: p.notBefore as string,
    expiresAt: (p.expiresAt as string | null) ?? null,
    graceDays: p.graceDays as number,
    clusterId: (p.clusterId as string | null) ?? null,
    limits: { maxServers: (limits.maxServers as number | null) ?? null },
    features: p.features as string[],
  };
}

/** Parses a license file without trusting it (the signature is checked by the verifier). */
export function parseLicenseFile(text: string | Buffer): ParsedLicenseFile {
  const size = typeof text === 'string' ? Buffer.byteLength(text) : text.length;
  if (size > MAX_LICENSE_FILE_BYTES) throw LicenseErrors.COMMON_ERR_LICENSE_TOO_LARGE(undefined, { bytes: size, max: MAX_LICENSE_FILE_BYTES });
  let outer: unknown;
  try {
    outer = JSON.parse(typeof text === 'string' ? text : text.toString('utf8'));
  } catch {
    malformed('not JSON');
  }
  const o = outer as Record<string, unknown> | null;
  if (!o || typeof o !== 'object' || Array.isArray(o)) malformed('not a JSON object');
  if (o.format !== LICENSE_FILE_FORMAT) malformed(`format must be "${LICENSE_FILE_FORMAT}"`);
  if (typeof o.payload !== 'string' || !B64.test(o.payload)) malformed('payload must be base64');
  if (typeof o.signature !== 'string' || !B64.test(o.signature)) malformed('signature must be base64');
  const payloadBytes = Buffer.from(o.payload, 'base64');
  const signature = Buffer.from(o.signature, 'base64');
  let payloadJson: unknown;
  try {
    payloadJson = JSON.parse(payloadBytes.toString('utf8'));
  } catch {
    malformed('payload is not JSON');
  }
  return { payload: validatePayload(payloadJson), payloadBytes, signature };
}

/** The vendor's side: serialises and signs a payload into a license file's text. */
export function signLicense(payload: LicensePayload, privateKey: string | KeyObject): string {
  const checked = validatePayload(payload);
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  if (key.asymmetricKeyType !== 'ed25519') throw new TypeError('the license signing key must be an Ed25519 private key');
  const payloadBytes = Buffer.from(JSON.stringify(checked), 'utf8');
  const signature = sign(null, payloadBytes, key);
  return `${JSON.stringify({ format: LICENSE_FILE_FORMAT, payload: payloadBytes.toString('base64'), signature: signature.toString('base64') }, null, 2)}\n`;
}
