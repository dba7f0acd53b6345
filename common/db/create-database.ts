import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import type { databaseArea } from '../config/areas/database.js';
import type { AreaValues } from '../config/define.js';
import { CommonErrors } from '../errors.js';
import type { Logger } from '../log.js';
import { isRetryable, translateDbError } from './errors/translate.js';
import { getHelpers } from './helpers/index.js';
import { type DatabaseTarget, DEFAULT_PORTS, parseDatabaseUrl } from './url.js';

export type DatabaseConfig = AreaValues<(typeof databaseArea)['keys']>;

// int8 and numeric counts come back as strings from pg; our ids and counters stay < 2^53.
pg.types.setTypeParser(20, (v) => Number(v));
pg.types.setTypeParser(1700, (v) => Number(v));

export function resolveTarget(cfg: DatabaseConfig): DatabaseTarget {
  if (cfg.url) {
    const parsed = parseDatabaseUrl(cfg.url);
    if (!parsed.ok) throw CommonErrors.COMMON_ERR_CONFIG_INVALID(`OMFLOW_DB_URL ${parsed.message}`);
    return { ...parsed.value, password: parsed.value.password ?? cfg.password };
  }
  return { client: cfg.client, host: cfg.host, port: cfg.port, database: cfg.name, user: cfg.user, password: cfg.password, params: {} };
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
  /** Runs fn in a transaction, retrying deadlocks/serialization failures a few times. */
  transaction<T>(fn: (trx: Knex.Transaction) => Promise<T>, attempts?: number): Promise<T>;
  /** The database's clock. */
  now(): Promise<Date>;
  destroy(): Promise<void>;
}

/** Creates the pooled knex instance for a process, with driver errors translated once. */
export function createDatabase(cfg: DatabaseConfig, opts: { log?: Logger } = {}): Database {
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
  wrapErrors(knex, target.client);
  return wrapDatabase(knex, target.client);
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

/** Makes every query on this knex reject with translated errors, so callers see stable codes. */
export function wrapErrors(knex: Knex, vendor: DatabaseTarget['client']): void {
  const client = knex.client as Record<'query' | 'acquireConnection', (...args: unknown[]) => Promise<unknown>>;
  for (const method of ['query', 'acquireConnection'] as const) {
    const original = client[method].bind(client);
    client[method] = async (...args: unknown[]) => {
      try {
        return await original(...args);
      } catch (err) {
        throw translateDbError(vendor, err);
      }
    };
  }
}
