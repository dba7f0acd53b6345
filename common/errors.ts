/**
 * Error catalogue helpers. Every part (booster, agent, server, common) keeps its own
 * catalogue of stable codes; code and HTTP status never change once released, messages may.
 * Callers match on `code`, never on message text.
 */
export interface ErrorSpec {
  status: number;
  message: string;
  /** One line for docs/errors.md: what an operator or client should do. */
  hint: string;
}

export class OmflowError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: unknown;

  constructor(code: string, status: number, message: string, details?: unknown, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OmflowError';
    this.code = code;
    this.status = status;
    this.details = details;
  }

  toJSON(): { code: string; message: string; details?: unknown } {
    return this.details === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, details: this.details };
  }
}

export type ErrorFactory = ((message?: string, details?: unknown, options?: { cause?: unknown }) => OmflowError) & {
  code: string;
  status: number;
  spec: ErrorSpec;
  is(err: unknown): err is OmflowError;
};

export type Catalogue<K extends string> = { readonly [P in K]: ErrorFactory };

/** Builds a frozen catalogue whose factories produce `OmflowError`s carrying the key as code. */
export function defineErrors<K extends string>(specs: Record<K, ErrorSpec>): Catalogue<K> {
  const out = {} as Record<K, ErrorFactory>;
  for (const code of Object.keys(specs) as K[]) {
    const spec = specs[code];
    const factory = ((message?: string, details?: unknown, options?: { cause?: unknown }) =>
      new OmflowError(code, spec.status, message ?? spec.message, details, options)) as ErrorFactory;
    factory.code = code;
    factory.status = spec.status;
    factory.spec = spec;
    factory.is = (err: unknown): err is OmflowError => err instanceof OmflowError && err.code === code;
    out[code] = factory;
  }
  return Object.freeze(out);
}

export function isOmflowError(err: unknown): err is OmflowError {
  return err instanceof OmflowError;
}

export const CommonErrors = defineErrors({
  COMMON_ERR_CONFIG_INVALID: {
    status: 500,
    message: 'Configuration is invalid',
    hint: 'Fix every key listed in the message (see docs/configuration.md) and start again.',
  },
  COMMON_ERR_DB_SQLITE_REFUSED: {
    status: 500,
    message:
      'SQLite cannot be used: every Booster and app server of a cluster must share one database server over the network (PostgreSQL, MySQL/MariaDB, SQL Server or Oracle)',
    hint: 'Point OMFLOW_DB_URL at a PostgreSQL, MySQL/MariaDB, SQL Server or Oracle server.',
  },
  COMMON_ERR_DB_URL_INVALID: {
    status: 500,
    message: 'OMFLOW_DB_URL is malformed',
    hint: 'Fix the URL as the message says: scheme://user:password@host:port/database (PostgreSQL: host1:port1,host2:port2 for several hosts).',
  },
  COMMON_ERR_DB_URL_UNSUPPORTED: {
    status: 500,
    message: 'OMFLOW_DB_URL asks for something this vendor or OMFLOW does not support',
    hint: 'Several hosts and target_session_attrs (any, read-write, primary) are for PostgreSQL only; put MaxScale, HAProxy or a Galera virtual IP in front of MySQL/MariaDB.',
  },
  COMMON_ERR_DB_UNIQUE: {
    status: 409,
    message: 'A row with the same unique value already exists',
    hint: 'The write conflicts with existing data; retrying the same write will not help.',
  },
  COMMON_ERR_DB_FOREIGN_KEY: {
    status: 409,
    message: 'The write refers to a row that does not exist (or is still referenced)',
    hint: 'Check the referenced ids.',
  },
  COMMON_ERR_DB_NOT_NULL: {
    status: 400,
    message: 'A required column was empty',
    hint: 'Provide every required value. On Oracle an empty string is NULL.',
  },
  COMMON_ERR_DB_TOO_LONG: {
    status: 400,
    message: 'A value is longer than its column allows',
    hint: 'Shorten the value.',
  },
  COMMON_ERR_DB_RETRYABLE: {
    status: 503,
    message: 'The database aborted the transaction (deadlock or serialization failure)',
    hint: 'Transient; the operation is retried automatically a few times before this is reported.',
  },
  COMMON_ERR_DB_CONNECTION: {
    status: 503,
    message: 'The database cannot be reached',
    hint: 'Check that the database server runs and OMFLOW_DB_* points at it; the processes reconnect by themselves.',
  },
  COMMON_ERR_DB_UNKNOWN: {
    status: 500,
    message: 'The database reported an unexpected error',
    hint: 'See the log entry for the vendor error.',
  },
  COMMON_ERR_CLUSTER_AUTH: {
    status: 401,
    message: 'Cluster authentication failed',
    hint: 'Every booster, agent and server of a cluster must use the same OMFLOW_CLUSTER_SECRET and reasonably synchronised clocks (NTP).',
  },
  COMMON_ERR_CLUSTER_REPLAY: {
    status: 401,
    message: 'This signed cluster call was already received (replay refused)',
    hint: 'Every signed call carries a fresh nonce; a repeated one is a captured call sent again. Nothing was changed. If a cluster member sends it, it reuses headers: sign each send anew.',
  },
  COMMON_ERR_CLUSTER_BUSY: {
    status: 503,
    message: 'Too many signed cluster calls within the signature window',
    hint: 'The replay cache of this receiver is full; it heals within a minute. A cluster member is flooding it: look for a runaway sender.',
  },
  COMMON_ERR_OPERATOR_AUTH: {
    status: 401,
    message: 'Credentials required: an operator token (Authorization: Bearer) or a cluster signature',
    hint: 'Send OMFLOW_BOOSTER_OPERATOR_TOKEN as a Bearer token (Prometheus: authorization block), or run omflow status where OMFLOW_CLUSTER_SECRET is configured.',
  },
  COMMON_ERR_OPERATOR_SCOPE: {
    status: 403,
    message: 'This operator token is read-only; the command needs a token with the write scope',
    hint: 'Use a token of OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS (its name is recorded in the event log), or run the command where OMFLOW_CLUSTER_SECRET is configured. OMFLOW_BOOSTER_OPERATOR_TOKEN only reads status, events and metrics.',
  },
  COMMON_ERR_BAD_REQUEST: {
    status: 400,
    message: 'The request is malformed',
    hint: 'Fix the request body according to the message details.',
  },
  COMMON_ERR_PAYLOAD_TOO_LARGE: {
    status: 413,
    message: 'The request body is too large',
    hint: 'Send a smaller body.',
  },
  COMMON_ERR_MIGRATIONS_PENDING: {
    status: 503,
    message: 'The database schema is older than this release',
    hint: 'Run `omflow migrate latest`.',
  },
});
