import { defineErrors } from '../../common/errors.js';

/** Stable codes of the booster's license gate (the verification codes are COMMON_ERR_LICENSE_*, common/license/errors.ts). */
export const LicenseGateErrors = defineErrors({
  BOOSTER_ERR_LICENSE_REQUIRED: {
    status: 503,
    message: 'The trial has ended and no valid license is installed',
    hint: 'An administrator uploads a license at /admin/settings (System settings → Booster license data → Upload); the gate lifts within seconds on both boosters. Nothing was deleted.',
  },
  BOOSTER_ERR_LICENSE_SERVER_LIMIT: {
    status: 503,
    message: 'More app servers are registered than the license allows; the extra servers get no traffic',
    hint: 'Remove servers or ask the vendor for a license with a higher server count.',
  },
});
