import { defineErrors } from '../common/errors.js';

/** Stable codes of the app server's API. docs/errors.md is generated from here. */
export const ServerErrors = defineErrors({
  SERVER_ERR_STALE_EPOCH: {
    status: 409,
    message: 'The request carries a booster epoch older than one this server has seen',
    hint: 'A booster that lost leadership is still sending work; it is refused by design. No action needed.',
  },
});
