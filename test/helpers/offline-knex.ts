import knexFactory, { type Knex } from 'knex';

/**
 * A knex for a vendor we have no server for: queries are compiled to that vendor's SQL and
 * recorded instead of sent. Used to prove every migration can be expressed in SQL Server and
 * Oracle; not a substitute for a live database.
 */
export function offlineKnex(client: 'mssql' | 'oracledb' | 'pg' | 'mysql2'): { knex: Knex; statements: string[] } {
  const statements: string[] = [];
  // Oracle: knex needs a server version to size generated names; 12.1 is the strictest (30 bytes).
  const knex = knexFactory({ client, version: client === 'oracledb' ? '12.1' : undefined });
  const c = knex.client as unknown as Record<string, unknown>;
  c.acquireConnection = async () => ({ offline: true });
  c.releaseConnection = async () => {};
  c._query = async (_conn: unknown, obj: { sql: string }) => {
    statements.push(obj.sql);
    return { ...obj, response: [], rows: [] };
  };
  c.processResponse = () => [];
  return { knex, statements };
}
