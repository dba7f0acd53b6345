import { createHash } from 'node:crypto';
import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import type { databaseArea } from '../config/areas/database.js';
import type { AreaValues } from '../config/define.js';
import { CommonErrors } from '../errors.js';
import type { Logger } from '../log.js';
import { DatabaseAvailabilityMonitor } from './availability.js';
import { isRetryable, mustDiscardConnection, translateDbError } from './errors/translate.js';
import { getHelpers } from './helpers/index.js';
import { PREPARE_OPTION } from './helpers/types.js';
import { discardConnection, PgHostSelector, useHostSelector } from './pg-multi-host.js';
import { type DatabaseTarget, DEFAULT_PORTS, parseDatabaseUrl } from './url.js';

/** The database area's values; keys added later are optional so hand-built configs (tests, benches) keep compiling. */
export type DatabaseConfig = Omit<AreaValues<(typeof databaseArea)['keys']>, 'outageGraceMs' | 'preparedStatements'> & {
  outageGraceMs?: number;
  preparedStatements?: boolean;
};

/** OMFLOW_DB_OUTAGE_GRACE_MS's default, for configs built by hand. */
export const DEFAULT_OUTAGE_GRACE_MS = 10_000;

// int8 and numeric counts come back as strings from pg; our ids and counters stay < 2^53.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

export function resolveTarget(cfg: DatabaseConfig): DatabaseTarget {
  if (cfg.url) {
    const parsed = parseDatabaseUrl(cfg.url);
    if (!parsed.ok) throw CommonErrors.COMMON_ERR_CONFIG_INVALID(`OMFLOW_DB_URL ${parsed.message}`);
    return { ...parsed.value, password: parsed.value.password ?? cfg.password };
  }
  return {
    client: cfg.client,
    host: cfg.host,
    port: cfg.port,
    hosts: [{ host: cfg.host, port: cfg.port }],
    targetSessionAttrs: 'any',
    database: cfg.name,
    user: cfg.user,
    password: cfg.password,
    params: {},
  };
}

/** The callback-style mysql2 connection knex hands to `afterCreate`. */
interface MysqlConnection {
  query(sql: string, cb: (err: Error | null) => void): void;
}

/** knex configuration for a target; no connection is opened. */
export function knexConfigFor(target: DatabaseTarget, cfg: Pick<DatabaseConfig, 'poolMin' | 'poolMax' | 'connectTimeoutMs' | 'ssl'>): Knex.Config {
  const port = target.port ?? DEFAULT_PORTS[target.client];
  const pool = { min: cfg.poolMin, max: cfg.poolMax, acquireTimeoutMillis: cfg.connectTimeoutMs, idleTimeoutMillis: 30_000 };
  const base = { pool, acquireConnectionTimeout: cfg.connectTimeoutMs };
  switch (target.client) {
    case 'postgres':
      return {
        ...base,
        client: 'pg',
        connection: {
          host: target.host,
          port,
          database: target.database,
          user: target.user,
          password: target.password,
          ssl: cfg.ssl ? { rejectUnauthorized: target.params.sslmode === 'verify-full' } : false,
          connectionTimeoutMillis: cfg.connectTimeoutMs,
          application_name: 'omflow',
        },
      };
    case 'mysql':
      return {
        ...base,
        client: 'mysql2',
        connection: {
          host: target.host,
          port,
          database: target.database,
          user: target.user,
          password: target.password,
          // Every DATETIME holds UTC; see MysqlHelpers.timestamp.
          timezone: 'Z',
          charset: 'utf8mb4',
          supportBigNumbers: true,
          bigNumberStrings: false,
          connectTimeout: cfg.connectTimeoutMs,
          ssl: cfg.ssl ? {} : undefined,
        },
        pool: {
          ...pool,
          afterCreate: (conn: MysqlConnection, done: (err: Error | null, conn: MysqlConnection) => void) =>
            conn.query("SET time_zone = '+00:00'", (err: Error | null) => done(err, conn)),
        },
      };
    case 'mssql':
      return {
        ...base,
        client: 'mssql',
        connection: {
          server: target.host,
          port,
          database: target.database,
          user: target.user,
          password: target.password,
          options: { encrypt: cfg.ssl, trustServerCertificate: !cfg.ssl, connectTimeout: cfg.connectTimeoutMs, useUTC: true },
        } as Knex.MsSqlConnectionConfig,
      };
    case 'oracle':
      return {
        ...base,
        client: 'oracledb',
        // node-oracledb 6+ runs in thin mode unless initOracleClient() is called: no Instant Client needed.
        connection: { user: target.user, password: target.password, connectString: `${target.host}:${port}/${target.database}` },
        fetchAsString: ['clob'],
        // Sizes knex's generated sequence/trigger names for the strictest supported server.
        version: '12.1',
      } as Knex.Config;
  }
}

export interface Database {
  knex: Knex;
  vendor: DatabaseTarget['client'];
  /**
   * Reachability seen by this process's own queries (common/db/availability.ts), when the
   * process asked for it (`createDatabase(cfg, { availability: true })`). While it says
   * unreachable, queries fail at once with COMMON_ERR_DB_CONNECTION instead of waiting for a
   * pool timeout; a probe finds the database again.
   */
  availability?: DatabaseAvailabilityMonitor;
  /** Runs fn in a transaction, retrying deadlocks/serialization failures a few times. */
  transaction<T>(fn: (trx: Knex.Transaction) => Promise<T>, attempts?: number): Promise<T>;
  /** The database's clock. */
  now(): Promise<Date>;
  destroy(): Promise<void>;
}

export interface CreateDatabaseOptions {
  log?: Logger;
  /**
   * Watch reachability (one WARN/INFO line per outage on `log`) and fail fast while the
   * database is unreachable. The booster keeps its own lease-driven signal instead.
   */
  availability?: boolean;
}

/** Creates the pooled knex instance for a process, with driver errors translated once. */
export function createDatabase(cfg: DatabaseConfig, opts: CreateDatabaseOptions = {}): Database {
  const target = resolveTarget(cfg);
  // knex's own messages (e.g. "Acquire connection error") go to our logger; the error itself
  // reaches the caller translated, so it is only worth a debug line here.
  const log = opts.log;
  const config: Knex.Config = {
    ...knexConfigFor(target, cfg),
    log: {
      warn: (message: unknown) => log?.debug({ knex: String(message) }, 'knex warning'),
      error: (message: unknown) => log?.warn({ knex: String(message) }, 'knex error'),
      deprecate: (message: unknown) => log?.debug({ knex: String(message) }, 'knex deprecation'),
      debug: () => {},
    },
  };
  const knex = knexFactory(config);
  if (target.client === 'postgres' && (cfg.preparedStatements ?? true)) namePreparedStatements(knex);
  if (target.client === 'postgres' && (target.hosts.length > 1 || target.targetSessionAttrs !== 'any'))
    useHostSelector(knex, new PgHostSelector(target.hosts, target.targetSessionAttrs, DEFAULT_PORTS.postgres));
  const availability = opts.availability
    ? new DatabaseAvailabilityMonitor({
        probe: () => probeOnOwnConnection(knex),
        log,
        graceMs: cfg.outageGraceMs ?? DEFAULT_OUTAGE_GRACE_MS,
        probeTimeoutMs: Math.min(cfg.connectTimeoutMs, 2000),
      })
    : undefined;
  wrapErrors(knex, target.client, availability);
  const db = wrapDatabase(knex, target.client);
  if (!availability) return db;
  availability.onChange((up) => {
    if (!up) discardIdleConnections(knex);
  });
  return {
    ...db,
    availability,
    async destroy() {
      availability.stop();
      await db.destroy();
    },
  };
}

/**
 * Once the database is known unreachable, no idle pooled connection is trusted again: after a
 * restart they are dead, after a network partition they may look alive and hang the first
 * query. Marked, they are destroyed at their next acquire and replaced by fresh connections.
 */
function discardIdleConnections(knex: Knex): void {
  const pool = (knex.client as { pool?: { free?: { resource: unknown }[] } }).pool;
  for (const idle of pool?.free ?? []) discardConnection(idle.resource, 'database unreachable');
}

/** The knex internals a probe uses: a connection outside the pool, one statement, closed again. */
interface RawClient {
  acquireRawConnection(): Promise<unknown>;
  destroyRawConnection(conn: unknown): Promise<void>;
  _query(conn: unknown, obj: { sql: string; bindings: unknown[] }): Promise<unknown>;
}

/**
 * One round trip on a connection of its own: the pool may be full of queries that hang, and a
 * pooled connection may be a dead one. With a multi-host URL this also finds a new primary.
 */
async function probeOnOwnConnection(knex: Knex): Promise<void> {
  const client = knex.client as unknown as RawClient;
  const conn = await client.acquireRawConnection();
  try {
    await client._query(conn, { sql: getHelpers(knex).pingSql(), bindings: [] });
  } finally {
    await client.destroyRawConnection(conn).catch(() => {});
  }
}

export function wrapDatabase(knex: Knex, vendor: DatabaseTarget['client']): Database {
  const helpers = getHelpers(knex);
  return {
    knex,
    vendor,
    async transaction(fn, attempts = 4) {
      for (let i = 1; ; i++) {
        try {
          return await knex.transaction(fn);
        } catch (err) {
          const translated = translateDbError(vendor, err);
          if (i >= attempts || !isRetryable(translated)) throw translated;
          await new Promise((r) => setTimeout(r, 5 * 2 ** i + Math.random() * 10));
        }
      }
    },
    async now() {
      const result = await knex.raw(helpers.selectNowSql());
      const row = helpers.rawRows(result)[0];
      return helpers.toDate(row.now ?? row.NOW)!;
    },
    async destroy() {
      await knex.destroy();
    },
  };
}

/**
 * PostgreSQL: a statement the helpers marked (`prepared`) runs as a named prepared statement, named
 * by its text's hash, so one name never means two texts. pg parses it once per connection.
 * A prepared statement keeps the parameter types of its first parse: if a schema patch changes a
 * column it writes, re-planning fails (42804, 0A000) on that connection at every run. The
 * connection is then discarded, and the next one prepares the statement against the new schema.
 */
function namePreparedStatements(knex: Knex): void {
  type QueryObject = { sql?: string; options?: Record<string, unknown> };
  const client = knex.client as { query: (conn: unknown, obj: QueryObject) => Promise<unknown> };
  const query = client.query.bind(client);
  client.query = async (conn, obj) => {
    if (!obj?.options?.[PREPARE_OPTION] || !obj.sql) return query(conn, obj);
    obj.options = { ...obj.options, name: `omflow_${createHash('sha1').update(obj.sql).digest('hex').slice(0, 20)}` };
    try {
      return await query(conn, obj);
    } catch (err) {
      if (STALE_PREPARED_STATEMENT.has(String((err as { code?: unknown } | null)?.code))) discardConnection(conn, err);
      throw err;
    }
  };
}

/** Plan invalid after a schema change: datatype mismatch, cached plan's result changed, undefined column or table. */
const STALE_PREPARED_STATEMENT = new Set(['42804', '0A000', '42703', '42P01']);

/**
 * Makes every query on this knex reject with translated errors, so callers see stable codes.
 * With `availability`: queries report their outcome to it, and while it says unreachable a
 * connection is refused at once (COMMON_ERR_DB_CONNECTION) instead of after the pool timeout.
 * A connection whose error shows it can no longer serve us (PostgreSQL 25006: the host became
 * read-only, a demoted primary) is marked so the pool destroys it instead of handing it out again.
 */
export function wrapErrors(knex: Knex, vendor: DatabaseTarget['client'], availability?: DatabaseAvailabilityMonitor): void {
  const client = knex.client as Record<'query' | 'acquireConnection', (...args: unknown[]) => Promise<unknown>>;
  const query = client.query.bind(client);
  const acquire = client.acquireConnection.bind(client);
  const translatedQuery = async (...args: unknown[]) => {
    try {
      return await query(...args);
    } catch (err) {
      if (mustDiscardConnection(vendor, err)) discardConnection(args[0], err);
      throw translateDbError(vendor, err);
    }
  };
  const translatedAcquire = async (...args: unknown[]) => {
    try {
      return await acquire(...args);
    } catch (err) {
      throw translateDbError(vendor, err);
    }
  };
  if (!availability) {
    client.query = translatedQuery;
    client.acquireConnection = translatedAcquire;
    return;
  }
  client.query = (...args: unknown[]) => availability.track(translatedQuery(...args));
  client.acquireConnection = async (...args: unknown[]) => {
    if (!availability.isUp())
      throw CommonErrors.COMMON_ERR_DB_CONNECTION(undefined, { unreachableForMs: availability.downForMs(), graceMs: availability.graceMs });
    try {
      return await translatedAcquire(...args);
    } catch (err) {
      if (CommonErrors.COMMON_ERR_DB_CONNECTION.is(err)) availability.failed();
      throw err;
    }
  };
}
