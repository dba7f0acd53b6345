import type { Knex } from 'knex';
import type { DbClientName } from '../../config/areas/database.js';
import { MssqlHelpers } from './dialects/mssql.js';
import { MysqlHelpers } from './dialects/mysql.js';
import { OracleHelpers } from './dialects/oracle.js';
import { PostgresHelpers } from './dialects/postgres.js';
import type { DialectHelpers } from './types.js';

export { DialectHelpers } from './types.js';

/** Maps a knex client name (pg, mysql2, mssql, oracledb, …) to our vendor name. */
export function vendorOf(knex: Knex): DbClientName {
  const client = String((knex.client as { config: Knex.Config }).config.client);
  if (client === 'pg' || client === 'postgres' || client === 'postgresql') return 'postgres';
  if (client === 'mysql' || client === 'mysql2') return 'mysql';
  if (client === 'mssql') return 'mssql';
  if (client === 'oracledb' || client === 'oracle') return 'oracle';
  throw new Error(`unsupported knex client ${client}`);
}

const cache = new WeakMap<Knex, DialectHelpers>();

/** Dialect helpers for a knex instance (or transaction: it shares its client's dialect). */
export function getHelpers(knex: Knex): DialectHelpers {
  const root = ((knex as Knex & { client: { knex?: Knex } }).client as unknown as object) ?? knex;
  let h = cache.get(root as Knex);
  if (!h) {
    const vendor = vendorOf(knex);
    h =
      vendor === 'postgres'
        ? new PostgresHelpers(knex)
        : vendor === 'mysql'
          ? new MysqlHelpers(knex)
          : vendor === 'mssql'
            ? new MssqlHelpers(knex)
            : new OracleHelpers(knex);
    cache.set(root as Knex, h);
  }
  return h;
}
