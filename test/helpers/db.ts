import { randomBytes } from 'node:crypto';
import knexFactory, { type Knex } from 'knex';
import { inject } from 'vitest';
import { createDatabase, type Database, type DatabaseConfig } from '../../common/db/create-database.js';
import { migrateLatest } from '../../common/db/migrate.js';
import { parseDatabaseUrl } from '../../common/db/url.js';
import type { Vendor } from './vendors.js';

export interface TestDatabase {
  vendor: Vendor;
  /** OMFLOW_DB_URL of this file's own database. */
  url: string;
  db: Database;
  knex: Knex;
  config: DatabaseConfig;
  drop(): Promise<void>;
}

export function vendorsUnderTest(): Vendor[] {
  return inject('vendors') as Vendor[];
}

function adminUrl(vendor: Vendor): string {
  if (vendor === 'postgres') return inject('pgAdminUrl');
  const url = vendor === 'mysql' ? inject('mysqlAdminUrl') : process.env[`OMFLOW_TEST_${vendor.toUpperCase()}_URL`];
  if (!url) throw new Error(`no server for ${vendor} in this run`);
  return url;
}

export function dbConfig(url: string, overrides: Partial<DatabaseConfig> = {}): DatabaseConfig {
  return {
    url,
    client: 'postgres',
    host: '127.0.0.1',
    port: undefined,
    name: 'omflow',
    user: 'omflow',
    password: undefined,
    ssl: false,
    poolMin: 0,
    poolMax: 10,
    connectTimeoutMs: 5000,
    ...overrides,
  };
}

/** A fresh database for one test file (Unleash style), optionally migrated. */
export async function createTestDatabase(vendor: Vendor = 'postgres', opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  const admin = adminUrl(vendor);
  const name = `t_${randomBytes(5).toString('hex')}`;
  let url = admin;
  let dropFn: () => Promise<void> = async () => {};
  if (vendor !== 'oracle') {
    const target = parseDatabaseUrl(admin);
    if (!target.ok) throw new Error(target.message);
    const adminKnex = knexFactory({
      client: vendor === 'postgres' ? 'pg' : vendor === 'mysql' ? 'mysql2' : 'mssql',
      connection:
        vendor === 'mssql'
          ? {
              server: target.value.host,
              port: target.value.port,
              user: target.value.user,
              password: target.value.password,
              database: target.value.database,
              options: { trustServerCertificate: true },
            }
          : { host: target.value.host, port: target.value.port, user: target.value.user, password: target.value.password, database: target.value.database },
      pool: { min: 0, max: 1 },
    });
    try {
      await adminKnex.raw(vendor === 'mysql' ? `CREATE DATABASE ${name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin` : `CREATE DATABASE ${name}`);
    } finally {
      await adminKnex.destroy();
    }
    const u = new URL(admin);
    u.pathname = `/${name}`;
    url = u.toString();
    dropFn = async () => {
      const k = knexFactory({ client: vendor === 'postgres' ? 'pg' : vendor === 'mysql' ? 'mysql2' : 'mssql', connection: admin, pool: { min: 0, max: 1 } });
      try {
        await k.raw(vendor === 'postgres' ? `DROP DATABASE IF EXISTS ${name} WITH (FORCE)` : `DROP DATABASE IF EXISTS ${name}`);
      } catch {
        // A child process may still hold a connection; the run's database server is thrown away anyway.
      } finally {
        await k.destroy();
      }
    };
  }
  const config = dbConfig(url);
  const db = createDatabase(config);
  if (opts.migrate) await migrateLatest(db.knex);
  return {
    vendor,
    url,
    db,
    knex: db.knex,
    config,
    async drop() {
      await db.destroy();
      await dropFn();
    },
  };
}
