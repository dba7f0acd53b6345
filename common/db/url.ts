import type { DbClientName } from './clients.js';

export interface DatabaseTarget {
  client: DbClientName;
  host: string;
  port?: number;
  database: string;
  user?: string;
  password?: string;
  params: Record<string, string>;
}

const SCHEMES: Record<string, DbClientName> = {
  postgres: 'postgres',
  postgresql: 'postgres',
  mysql: 'mysql',
  mariadb: 'mysql',
  mssql: 'mssql',
  sqlserver: 'mssql',
  oracle: 'oracle',
};

export const DEFAULT_PORTS: Record<DbClientName, number> = { postgres: 5432, mysql: 3306, mssql: 1433, oracle: 1521 };

/** Parses OMFLOW_DB_URL. Never throws: configuration errors are collected by the loader. */
export function parseDatabaseUrl(raw: string): { ok: true; value: DatabaseTarget } | { ok: false; message: string } {
  const scheme = /^([a-z0-9+]+):/i.exec(raw)?.[1]?.toLowerCase();
  if (scheme === undefined) return { ok: false, message: 'must start with a scheme such as postgres://' };
  if (scheme.startsWith('sqlite') || scheme === 'file')
    return {
      ok: false,
      message:
        'SQLite is refused (COMMON_ERR_DB_SQLITE_REFUSED): a cluster needs one database server that every Booster and app server reaches over the network; use PostgreSQL, MySQL/MariaDB, SQL Server or Oracle',
    };
  const client = SCHEMES[scheme];
  if (!client) return { ok: false, message: `unknown scheme "${scheme}:" (use postgres://, mysql://, mssql:// or oracle://)` };
  const authority = /^[a-z0-9+]+:\/\/(?:[^@/]*@)?(\[[^\]]*\]|[^:/?#]*)(?::([^/?#]*))?/i.exec(raw);
  const rawPort = authority?.[2];
  if (rawPort !== undefined && rawPort !== '' && !(/^\d+$/.test(rawPort) && Number(rawPort) > 0 && Number(rawPort) < 65536))
    return { ok: false, message: `has a malformed port "${rawPort}"` };
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return { ok: false, message: 'is not a valid URL' };
  }
  if (!u.hostname) return { ok: false, message: 'has no host' };
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) return { ok: false, message: 'has no database name (…/name)' };
  const params: Record<string, string> = Object.fromEntries(u.searchParams);
  return {
    ok: true,
    value: {
      client,
      // ?host=/dir (libpq style): a unix-socket directory, reachable from any network namespace.
      host: params.host?.startsWith('/') ? params.host : u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port ? Number(u.port) : undefined,
      database,
      user: u.username ? decodeURIComponent(u.username) : undefined,
      password: u.password ? decodeURIComponent(u.password) : undefined,
      params,
    },
  };
}
