import { DB_CLIENTS } from '../../db/clients.js';
import { parseDatabaseUrl } from '../../db/url.js';
import { bool, defineArea, int, oneOf, optionalPort, optionalStr, str } from '../define.js';

// Kept here too for existing importers; the list lives in common/db/clients.ts.
export { DB_CLIENTS, type DbClientName } from '../../db/clients.js';

export const databaseArea = defineArea({
  name: 'database',
  title: 'Database (shared by every Booster, agent and app server)',
  keys: {
    url: optionalStr('OMFLOW_DB_URL', {
      doc: 'Connection URL: postgres://, mysql:// (MariaDB too), mssql:// or oracle://user:pass@host:port/service. Wins over the separate keys. SQLite is refused. PostgreSQL may list several hosts the libpq way, postgres://u:p@h1:5432,h2:5432/db?target_session_attrs=read-write (any, read-write or primary): every new connection tries them in order and keeps the first that fits, so a promoted replica is found on its own. MySQL/MariaDB take one host: put MaxScale, HAProxy or a Galera virtual IP in front.',
      secret: true,
    }),
    client: oneOf('OMFLOW_DB_CLIENT', DB_CLIENTS, { doc: 'Vendor when OMFLOW_DB_URL is not set.', default: 'postgres' }),
    host: str('OMFLOW_DB_HOST', { doc: 'Database host when OMFLOW_DB_URL is not set.', default: '127.0.0.1' }),
    port: optionalPort('OMFLOW_DB_PORT', { doc: 'Database port; the vendor default when empty (5432, 3306, 1433, 1521).' }),
    name: str('OMFLOW_DB_NAME', { doc: 'Database name (Oracle: service name).', default: 'omflow' }),
    user: str('OMFLOW_DB_USER', { doc: 'Database user.', default: 'omflow' }),
    password: optionalStr('OMFLOW_DB_PASSWORD', { doc: 'Database password. Prefer OMFLOW_DB_PASSWORD_FILE.', secret: true }),
    ssl: bool('OMFLOW_DB_SSL', { doc: 'Use TLS to the database.', default: false }),
    poolMin: int('OMFLOW_DB_POOL_MIN', { doc: 'Minimum pooled connections per process.', default: 0, min: 0, max: 100 }),
    poolMax: int('OMFLOW_DB_POOL_MAX', { doc: 'Maximum pooled connections per process.', default: 10, min: 1, max: 500 }),
    connectTimeoutMs: int('OMFLOW_DB_CONNECT_TIMEOUT_MS', {
      doc: 'Connection and pool acquire timeout (per host of a multi-host URL).',
      default: 5000,
      min: 100,
    }),
    preparedStatements: bool('OMFLOW_DB_PREPARED_STATEMENTS', {
      doc: 'Run the hottest fixed statements (PostgreSQL: a ticket creation) as prepared statements, parsed and planned once per connection. Turn off behind a pooler that cannot keep prepared statements across transactions (PgBouncer before 1.21 in transaction mode).',
      default: true,
    }),
    outageGraceMs: int('OMFLOW_DB_OUTAGE_GRACE_MS', {
      doc: 'A database outage shorter than this is a hiccup: app servers stay ready for the boosters and agents do not restart them (requests that need the database get 503 SERVER_ERR_DB_UNAVAILABLE at once meanwhile). After it, /readyz answers 503 and boosters may mark servers down; agents still never restart a server for a database outage.',
      default: 10_000,
      min: 0,
      max: 3_600_000,
    }),
  },
  check(values, report) {
    if (values.url !== undefined) {
      const parsed = parseDatabaseUrl(values.url);
      if (!parsed.ok) report('OMFLOW_DB_URL', parsed.message);
      else if (parsed.value.password === undefined && values.password === undefined)
        report('OMFLOW_DB_PASSWORD', 'is required: OMFLOW_DB_URL carries no password');
    } else if (values.password === undefined) {
      report('OMFLOW_DB_PASSWORD', 'is required (or give OMFLOW_DB_URL with a password)');
    }
    if (values.poolMin > values.poolMax) report('OMFLOW_DB_POOL_MIN', 'must not exceed OMFLOW_DB_POOL_MAX');
  },
});
