/** Database vendors a run tests live (TEST_DB=postgres,mysql). Unknown names fail fast. */
export const KNOWN_VENDORS = ['postgres', 'mysql', 'mssql', 'oracle'] as const;
export type Vendor = (typeof KNOWN_VENDORS)[number];

export function selectedVendors(env: Record<string, string | undefined>): Vendor[] {
  const raw = env.TEST_DB?.trim();
  const names = raw
    ? raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [
        'postgres',
        ...(env.OMFLOW_TEST_MYSQL_URL ? ['mysql'] : []),
        ...(env.OMFLOW_TEST_MSSQL_URL ? ['mssql'] : []),
        ...(env.OMFLOW_TEST_ORACLE_URL ? ['oracle'] : []),
      ];
  const unknown = names.filter((n) => !(KNOWN_VENDORS as readonly string[]).includes(n));
  if (unknown.length) throw new Error(`TEST_DB: unknown vendor(s) ${unknown.join(', ')}; known: ${KNOWN_VENDORS.join(', ')}`);
  const missing = names.filter((n) => n !== 'postgres' && !env[`OMFLOW_TEST_${n.toUpperCase()}_URL`]);
  if (missing.length) throw new Error(`TEST_DB names ${missing.join(', ')} but OMFLOW_TEST_<VENDOR>_URL is not set for it`);
  return names as Vendor[];
}

// What the global setup (test/setup/global-setup.ts) provides to every test file.
declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the embedded PostgreSQL (database `postgres`). */
    pgAdminUrl: string;
    /** Admin URL of the MariaDB/MySQL server, when OMFLOW_TEST_MYSQL_URL is set. */
    mysqlAdminUrl: string | null;
    vendors: string[];
  }
}
