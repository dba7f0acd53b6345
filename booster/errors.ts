import { defineErrors } from '../common/errors.js';

/** Stable codes of the booster. Add, never renumber or reuse; docs/errors.md is generated from here. */
export const BoosterErrors = defineErrors({
  BOOSTER_ERR_NO_SERVER: {
    status: 503,
    message: 'No healthy app server is available',
    hint: 'Check `omflow status`: every server is down, draining or ejected. Start or undrain a server.',
  },
  BOOSTER_ERR_STANDBY: {
    status: 503,
    message: 'This booster is the standby; send requests to the active booster',
    hint: 'Point the VIP or DNS at the booster whose /_booster/active answers 200 (see X-Booster-Active).',
  },
});
