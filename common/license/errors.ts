import { defineErrors } from '../errors.js';

/**
 * Stable codes of license verification (common/license); the gate's own codes are in booster/license/errors.ts.
 * The admin page, `omflow license` and the booster all report these; docs/errors.md lists them.
 */
export const LicenseErrors = defineErrors({
  COMMON_ERR_LICENSE_MALFORMED: {
    status: 400,
    message: 'The file is not an OMFLOW license file',
    hint: 'Upload the .omflowlic file exactly as the vendor sent it (JSON with "payload" and "signature").',
  },
  COMMON_ERR_LICENSE_TOO_LARGE: {
    status: 413,
    message: 'The license file is too large',
    hint: 'A license file is a few hundred bytes; check that the right file was chosen.',
  },
  COMMON_ERR_LICENSE_UNKNOWN_KEY: {
    status: 400,
    message: 'The license is signed with a key this release does not know',
    hint: 'Ask the vendor for a license signed with a current key, or upgrade OMFLOW Booster.',
  },
  COMMON_ERR_LICENSE_BAD_SIGNATURE: {
    status: 400,
    message: 'The license signature does not match its contents (the file was altered or damaged)',
    hint: 'Upload the original file from the vendor; a license cannot be edited.',
  },
  COMMON_ERR_LICENSE_NOT_YET_VALID: {
    status: 400,
    message: 'The license is not valid yet',
    hint: 'Upload it on or after its start date, or check the cluster clock.',
  },
  COMMON_ERR_LICENSE_EXPIRED: {
    status: 400,
    message: 'The license has expired (including its grace period)',
    hint: 'Ask the vendor for a renewed license.',
  },
  COMMON_ERR_LICENSE_WRONG_CLUSTER: {
    status: 400,
    message: 'The license was issued for another cluster',
    hint: 'Send the cluster id shown in System settings → Booster license data to the vendor and upload the license issued for it.',
  },
  COMMON_ERR_LICENSE_CLOCK_BACKWARDS: {
    status: 409,
    message: 'The clock is behind the latest time already seen; the trial and license periods are not extended',
    hint: 'Fix the database server clock (NTP). The latest time seen is kept as the reference.',
  },
});

export type LicenseErrorCode = keyof typeof LicenseErrors;
