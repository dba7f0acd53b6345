import { defineErrors } from '../common/errors.js';

/** Stable codes of the app server's API. docs/errors.md is generated from here. */
export const ServerErrors = defineErrors({
  SERVER_ERR_STALE_EPOCH: {
    status: 409,
    message: 'The request carries a booster epoch older than one this server has seen',
    hint: 'A booster that lost leadership is still sending work; it is refused by design. No action needed.',
  },
  SERVER_ERR_UNAUTHENTICATED: {
    status: 401,
    message: 'Sign in first (session cookie, or Authorization: Bearer <token>)',
    hint: 'Call POST /api/auth/login and send the token, or create an API token.',
  },
  SERVER_ERR_FORBIDDEN: {
    status: 403,
    message: 'You are not allowed to do this',
    hint: 'Ask an administrator for the admin role or for the assignment.',
  },
  SERVER_ERR_CSRF: {
    status: 403,
    message: 'The CSRF token is missing or wrong',
    hint: 'Reload the page and submit again; API clients should use a bearer token instead of the cookie.',
  },
  SERVER_ERR_LOGIN_FAILED: {
    status: 401,
    message: 'Wrong user name or password',
    hint: 'Check the credentials; repeated failures lock the account for a while.',
  },
  SERVER_ERR_ACCOUNT_LOCKED: {
    status: 423,
    message: 'Too many failed logins; the account is locked for a while',
    hint: 'Wait for the lockout to end (System settings: login lockout) or ask an administrator.',
  },
  SERVER_ERR_NOT_FOUND: {
    status: 404,
    message: 'Not found',
    hint: 'Check the id or key in the URL.',
  },
  SERVER_ERR_VALIDATION: {
    status: 400,
    message: 'Some fields are invalid',
    hint: 'details.fields maps each invalid field to a reason code (required, type, min, max, pattern, option, …).',
  },
  SERVER_ERR_FLOW_INVALID: {
    status: 400,
    message: 'The flow definition is invalid',
    hint: 'details.problems lists every problem of the definition.',
  },
  SERVER_ERR_CONFLICT: {
    status: 409,
    message: 'The resource changed or is not in a state that allows this action',
    hint: 'Reload the resource and try again.',
  },
  SERVER_ERR_IDEMPOTENCY_MISMATCH: {
    status: 422,
    message: 'This Idempotency-Key was already used with a different request',
    hint: 'Use a new Idempotency-Key for a different request.',
  },
  SERVER_ERR_STEP_NOT_HELD: {
    status: 409,
    message: 'The step is not assigned to this server at this epoch',
    hint: 'The lease moved on (expired or reassigned); the dispatcher will hand it out again. No action needed.',
  },
  SERVER_ERR_STEP_CAPACITY: {
    status: 503,
    message: 'This server runs as many steps as it may',
    hint: 'Transient; the step is given back to the queue and dispatched again.',
  },
  SERVER_ERR_DRAINING: {
    status: 503,
    message: 'This server is stopping',
    hint: 'Transient; the booster sends the work to another server.',
  },
  SERVER_ERR_NOT_READY: {
    status: 503,
    message: 'The server is not ready (database unreachable, migrations pending or stopping)',
    hint: 'Check the database and run `omflow migrate latest`.',
  },
  SERVER_ERR_DB_UNAVAILABLE: {
    status: 503,
    message: 'The database cannot be reached right now; try again shortly',
    hint: 'Transient: the server answers at once instead of waiting, with Retry-After, and reconnects by itself when the database is back. Nothing was changed. If it lasts, check the database (docs/operator-guide.md).',
  },
  SERVER_ERR_INTERNAL: {
    status: 500,
    message: 'Internal server error',
    hint: 'See the server log entry with the same request id.',
  },
});
