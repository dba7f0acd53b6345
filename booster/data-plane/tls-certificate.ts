import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { BoosterErrors } from '../errors.js';

/**
 * The booster port's certificate: read, checked and turned into TLS options, at start (the
 * primary checks it before it forks, the listener loads it) and at every reload.
 */
export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

/** Mozilla "intermediate": forward-secret AEAD suites only for TLS 1.2; TLS 1.3 suites are all modern. */
const CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
const TLS_BASE: SecureContextOptions = { minVersion: 'TLSv1.2', ciphers: CIPHERS, honorCipherOrder: false };

export interface LoadedCertificate {
  options: SecureContextOptions;
  subject: string;
  fingerprint256: string;
  validTo: string;
}

/**
 * Reads and checks a certificate (PEM, chain allowed) and its key: parseable, the key matches
 * the leaf certificate, not expired, and OpenSSL accepts the pair. Throws BOOSTER_ERR_TLS_CERTIFICATE.
 */
export function loadCertificate(files: CertificateFiles, now = Date.now()): LoadedCertificate {
  const fail = (reason: string, cause?: unknown) =>
    BoosterErrors.BOOSTER_ERR_TLS_CERTIFICATE(
      `${BoosterErrors.BOOSTER_ERR_TLS_CERTIFICATE.spec.message}: ${reason}`,
      { certFile: files.certFile, keyFile: files.keyFile, reason },
      { cause },
    );
  let cert: Buffer;
  let key: Buffer;
  try {
    cert = readFileSync(files.certFile);
    key = readFileSync(files.keyFile);
  } catch (err) {
    throw fail(`cannot read: ${(err as Error).message}`, err);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    throw fail('the certificate file holds no PEM certificate', err);
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(key))) throw fail('the key does not match the certificate');
  } catch (err) {
    if (BoosterErrors.BOOSTER_ERR_TLS_CERTIFICATE.is(err)) throw err;
    throw fail('the key file holds no PEM private key', err);
  }
  if (Date.parse(leaf.validTo) < now) throw fail(`the certificate expired on ${leaf.validTo}`);
  if (Date.parse(leaf.validFrom) > now) throw fail(`the certificate is not valid before ${leaf.validFrom}`);
  const options = { ...TLS_BASE, cert, key };
  try {
    createSecureContext(options);
  } catch (err) {
    throw fail(`OpenSSL refused the pair: ${(err as Error).message}`, err);
  }
  return { options, subject: leaf.subject.replace(/\n/g, ', '), fingerprint256: leaf.fingerprint256, validTo: leaf.validTo };
}
