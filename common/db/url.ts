import type { DbClientName } from './clients.js';

/** One host of a (possibly multi-host) database URL; `port` undefined = the vendor default. */
export interface DatabaseHost {
  host: string;
  port?: number;
}

/**
 * libpq's `target_session_attrs`, the values that make sense for processes that write:
 * `any` (the first host that accepts a connection), `read-write` (the session must accept
 * writes: not a hot standby, default_transaction_read_only off), `primary` (not a hot standby).
 */
export const TARGET_SESSION_ATTRS = ['any', 'read-write', 'primary'] as const;
export type TargetSessionAttrs = (typeof TARGET_SESSION_ATTRS)[number];

export interface DatabaseTarget {
  client: DbClientName;
  /** The first host of `hosts` (kept for single-host callers). */
  host: string;
  port?: number;
  /** Every host, in the URL's order (PostgreSQL only may have more than one). */
  hosts: DatabaseHost[];
  /** Which session is acceptable (PostgreSQL); `any` when the URL does not say. */
  targetSessionAttrs: TargetSessionAttrs;
  database: string;
  user?: string;
  password?: string;
  params: Record<string, string>;
}

/** Why a URL was refused: a stable code (also in the message) and a message for the config report. */
export type DatabaseUrlProblem = { ok: false; code: DatabaseUrlErrorCode; message: string };
export type DatabaseUrlErrorCode = 'COMMON_ERR_DB_SQLITE_REFUSED' | 'COMMON_ERR_DB_URL_INVALID' | 'COMMON_ERR_DB_URL_UNSUPPORTED';

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

const invalid = (message: string): DatabaseUrlProblem => ({ ok: false, code: 'COMMON_ERR_DB_URL_INVALID', message: `${message} (COMMON_ERR_DB_URL_INVALID)` });
const unsupported = (message: string): DatabaseUrlProblem => ({
  ok: false,
  code: 'COMMON_ERR_DB_URL_UNSUPPORTED',
  message: `${message} (COMMON_ERR_DB_URL_UNSUPPORTED)`,
});

/** `host`, `host:port`, `[v6]`, `[v6]:port` → a DatabaseHost, or a problem. */
function parseHost(raw: string): DatabaseHost | DatabaseUrlProblem {
  const m = /^(\[[^\]]*\]|[^:[\]]*)(?::(.*))?$/.exec(raw);
  if (!m) return invalid(`has a malformed host "${raw}"`);
  const host = decodeURIComponent(m[1].replace(/^\[|\]$/g, ''));
  const rawPort = m[2];
  if (rawPort !== undefined && rawPort !== '' && !(/^\d+$/.test(rawPort) && Number(rawPort) > 0 && Number(rawPort) < 65536))
    return invalid(`has a malformed port "${rawPort}"`);
  return { host, port: rawPort ? Number(rawPort) : undefined };
}

/**
 * Parses OMFLOW_DB_URL. Never throws: configuration errors are collected by the loader.
 * PostgreSQL URLs may list several hosts the way libpq does
 * (`postgres://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write`); node-postgres itself
 * does not, so common/db/pg-multi-host.ts tries them.
 */
export function parseDatabaseUrl(raw: string): { ok: true; value: DatabaseTarget } | DatabaseUrlProblem {
  const scheme = /^([a-z0-9+]+):/i.exec(raw)?.[1]?.toLowerCase();
  if (scheme === undefined) return invalid('must start with a scheme such as postgres://');
  if (scheme.startsWith('sqlite') || scheme === 'file')
    return {
      ok: false,
      code: 'COMMON_ERR_DB_SQLITE_REFUSED',
      message:
        'SQLite is refused (COMMON_ERR_DB_SQLITE_REFUSED): a cluster needs one database server that every Booster and app server reaches over the network; use PostgreSQL, MySQL/MariaDB, SQL Server or Oracle',
    };
  const client = SCHEMES[scheme];
  if (!client) return invalid(`unknown scheme "${scheme}:" (use postgres://, mysql://, mssql:// or oracle://)`);
  // The authority is split by hand: WHATWG URL refuses a comma-separated host list.
  const parts = /^([a-z0-9+]+:\/\/)((?:[^@/?#]*@)?)([^/?#]*)(.*)$/is.exec(raw);
  if (!parts) return invalid('is not a valid URL');
  const [, prefix, userinfo, hostList, rest] = parts;
  const hosts: DatabaseHost[] = [];
  for (const item of hostList.split(',')) {
    const h = parseHost(item);
    if ('ok' in h) return h;
    if (!h.host) return invalid(hostList.includes(',') ? `has an empty host in the list "${hostList}"` : 'has no host');
    hosts.push(h);
  }
  if (hosts.length > 1 && client !== 'postgres')
    return unsupported(
      `lists ${hosts.length} hosts: only PostgreSQL URLs may; for MySQL/MariaDB point the URL at one address in front of the servers (MaxScale, HAProxy or a Galera virtual IP)`,
    );
  let u: URL;
  try {
    // The first host stands in for the list, so URL parses user, password, path and query.
    u = new URL(`${prefix}${userinfo}${hostList.split(',')[0]}${rest}`);
  } catch {
    return invalid('is not a valid URL');
  }
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database) return invalid('has no database name (…/name)');
  const params: Record<string, string> = Object.fromEntries(u.searchParams);
  const attrs = params.target_session_attrs ?? 'any';
  if (!(TARGET_SESSION_ATTRS as readonly string[]).includes(attrs))
    return unsupported(`has target_session_attrs=${attrs}; supported: ${TARGET_SESSION_ATTRS.join(', ')} (every OMFLOW process writes)`);
  if (params.target_session_attrs !== undefined && client !== 'postgres') return unsupported('has target_session_attrs, which only PostgreSQL URLs take');
  // ?host=/dir (libpq style): a unix-socket directory, reachable from any network namespace.
  if (params.host?.startsWith('/')) {
    if (hosts.length > 1) return unsupported('combines a host list with ?host=/socket-dir; use one or the other');
    hosts[0] = { host: params.host, port: hosts[0].port };
  }
  return {
    ok: true,
    value: {
      client,
      host: hosts[0].host,
      port: hosts[0].port,
      hosts,
      targetSessionAttrs: attrs as TargetSessionAttrs,
      database,
      user: u.username ? decodeURIComponent(u.username) : undefined,
      password: u.password ? decodeURIComponent(u.password) : undefined,
      params,
    },
  };
}
