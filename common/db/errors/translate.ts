import type { DbClientName } from '../../config/areas/database.js';
import { CommonErrors, OmflowError } from '../../errors.js';
import type { DbRecord } from '../row.js';

type Kind = 'unique' | 'foreignKey' | 'notNull' | 'tooLong' | 'retryable' | 'connection';

const FACTORY: Record<Kind, (typeof CommonErrors)[keyof typeof CommonErrors]> = {
  unique: CommonErrors.COMMON_ERR_DB_UNIQUE,
  foreignKey: CommonErrors.COMMON_ERR_DB_FOREIGN_KEY,
  notNull: CommonErrors.COMMON_ERR_DB_NOT_NULL,
  tooLong: CommonErrors.COMMON_ERR_DB_TOO_LONG,
  retryable: CommonErrors.COMMON_ERR_DB_RETRYABLE,
  connection: CommonErrors.COMMON_ERR_DB_CONNECTION,
};

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ESOCKET']);

// Errors without a code: knex's pool timeout, and node-postgres when the socket closed under a
// query or the client is already broken.
const CONNECTION_MESSAGES =
  /Timeout acquiring a connection|^Connection terminated|Client has encountered a connection error|Client was closed and is not queryable|no PostgreSQL host accepted/;

type Classifier = (e: DbRecord) => Kind | undefined;

// Vendor codes: PostgreSQL SQLSTATE, MySQL errno, SQL Server error number, Oracle ORA number.
const CLASSIFIERS: Record<DbClientName, Classifier> = {
  postgres: (e) =>
    (
      ({
        '23505': 'unique',
        '23503': 'foreignKey',
        '23502': 'notNull',
        '22001': 'tooLong',
        '40001': 'retryable',
        '40P01': 'retryable',
        '55P03': 'retryable',
        '57P01': 'connection',
        '08006': 'connection',
        '08001': 'connection',
        '08003': 'connection',
        '57P03': 'connection',
        // read_only_sql_transaction: the host is (now) a standby or read-only, e.g. a demoted
        // primary; the connection is discarded (mustDiscardConnection) and the next one looks
        // for a writable host, so for callers it is "no writable database right now".
        '25006': 'connection',
      }) as Record<string, Kind>
    )[e.code],
  mysql: (e) =>
    (
      ({
        1062: 'unique',
        1451: 'foreignKey',
        1452: 'foreignKey',
        1048: 'notNull',
        1364: 'notNull',
        1406: 'tooLong',
        1213: 'retryable',
        1205: 'retryable',
        2006: 'connection',
        2013: 'connection',
        1040: 'connection',
      }) as Record<number, Kind>
    )[e.errno] ?? (e.code === 'PROTOCOL_CONNECTION_LOST' ? 'connection' : undefined),
  mssql: (e) =>
    (({ 2627: 'unique', 2601: 'unique', 547: 'foreignKey', 515: 'notNull', 8152: 'tooLong', 2628: 'tooLong', 1205: 'retryable' }) as Record<number, Kind>)[
      e.number ?? e.originalError?.info?.number
    ] ?? (e.code === 'ESOCKET' || e.code === 'ETIMEOUT' || e.code === 'ECONNCLOSED' ? 'connection' : undefined),
  oracle: (e) =>
    (
      ({
        1: 'unique',
        2291: 'foreignKey',
        2292: 'foreignKey',
        1400: 'notNull',
        12899: 'tooLong',
        60: 'retryable',
        8177: 'retryable',
        3113: 'connection',
        3114: 'connection',
        12541: 'connection',
      }) as Record<number, Kind>
    )[e.errorNum] ?? (typeof e.code === 'string' && /^NJS-(500|501|503|510|521)$/.test(e.code) ? 'connection' : undefined),
};

/** Turns a driver error into one typed OmflowError (COMMON_ERR_DB_*); others pass through untouched. */
export function translateDbError(vendor: DbClientName, err: unknown): unknown {
  if (err instanceof OmflowError || err === null || typeof err !== 'object') return err;
  const e = err as DbRecord;
  let kind = CLASSIFIERS[vendor](e);
  if (!kind && (NETWORK_CODES.has(e.code) || CONNECTION_MESSAGES.test(String(e.message)))) kind = 'connection';
  if (!kind) return err;
  return FACTORY[kind](undefined, { vendorCode: e.code ?? e.errno ?? e.number ?? e.errorNum, constraint: e.constraint }, { cause: err });
}

export function isRetryable(err: unknown): boolean {
  return CommonErrors.COMMON_ERR_DB_RETRYABLE.is(err);
}

/**
 * True when the connection that raised `err` must not serve another query: PostgreSQL 25006
 * (read_only_sql_transaction) means the host became read-only (a demoted primary, a standby
 * after a failover); a new connection finds the writable host.
 */
export function mustDiscardConnection(vendor: DbClientName, err: unknown): boolean {
  return vendor === 'postgres' && (err as DbRecord | null)?.code === '25006';
}
