import type { Knex } from 'knex';
import type pg from 'pg';
import type { DatabaseHost, TargetSessionAttrs } from './url.js';

/**
 * libpq's multi-host connection for node-postgres, which has none (brianc/node-postgres#1470):
 * try the hosts in order, keep the first whose session fits `target_session_attrs`. The host
 * that accepted last is tried first next time, so a pool does not pay a dead host's connect
 * timeout for every new connection; after a failover it is refused (read-only, or gone) and
 * the next host in the list wins.
 */
export class PgHostSelector {
  #preferred = 0;
  readonly #hosts: DatabaseHost[];

  constructor(
    hosts: DatabaseHost[],
    readonly attrs: TargetSessionAttrs,
    private readonly defaultPort: number,
  ) {
    this.#hosts = hosts;
  }

  /** The host new connections try first (the last one that accepted). */
  get preferred(): DatabaseHost {
    return this.#hosts[this.#preferred];
  }

  /** Connects a new pg.Client: `makeClient(host, port)` builds it with every other setting. */
  async connect(makeClient: (host: string, port: number) => pg.Client): Promise<pg.Client> {
    const failures: { host: string; port: number; reason: string }[] = [];
    const order = [this.#preferred, ...this.#hosts.keys()].filter((i, n, all) => all.indexOf(i) === n);
    for (const i of order) {
      const { host, port = this.defaultPort } = this.#hosts[i];
      const client = makeClient(host, port);
      try {
        await client.connect();
      } catch (err) {
        failures.push({ host, port, reason: String((err as { code?: string }).code ?? (err as Error).message) });
        continue;
      }
      const refusal = await this.#refusal(client).catch((err: Error) => `session check failed: ${err.message}`);
      if (refusal === null) {
        this.#preferred = i;
        return client;
      }
      failures.push({ host, port, reason: refusal });
      await client.end().catch(() => {});
    }
    // 08001 sqlclient_unable_to_establish_sqlconnection: translated to COMMON_ERR_DB_CONNECTION.
    throw Object.assign(
      new Error(`no PostgreSQL host accepted a ${this.attrs} session: ${failures.map((f) => `${f.host}:${f.port} (${f.reason})`).join(', ')}`),
      { code: '08001', hosts: failures },
    );
  }

  /** null when the session fits `attrs`, else why not (libpq checks the same after connecting). */
  async #refusal(client: pg.Client): Promise<string | null> {
    if (this.attrs === 'any') return null;
    const r = await client.query<{ recovery: boolean; read_only: string }>(
      "SELECT pg_is_in_recovery() AS recovery, current_setting('transaction_read_only') AS read_only",
    );
    const { recovery, read_only } = r.rows[0];
    if (this.attrs === 'primary') return recovery ? 'a hot standby' : null;
    if (recovery) return 'a hot standby (read-only)';
    return read_only === 'on' ? 'read-only (default_transaction_read_only)' : null;
  }
}

/** knex's pg dialect, as far as we replace how it opens a connection. */
interface PgKnexClient {
  driver: typeof pg;
  connectionSettings: pg.ClientConfig;
  _acquireOnlyConnection(): Promise<pg.Client>;
}

/**
 * Makes a knex pg client open its connections through `selector`. knex marks a connection
 * that emitted 'error' or 'end' as disposed and its pool validation drops it, so we keep
 * exactly those listeners (knex/lib/dialects/postgres `_acquireOnlyConnection`).
 */
export function useHostSelector(knex: Knex, selector: PgHostSelector): void {
  const client = knex.client as unknown as PgKnexClient;
  client._acquireOnlyConnection = () =>
    selector.connect((host, port) => {
      // knex keeps the password as a hidden (non-enumerable) property: a spread would drop it.
      const settings = client.connectionSettings;
      const conn = new client.driver.Client({ ...settings, password: settings.password, host, port });
      const marked = conn as pg.Client & { __knex__disposed?: unknown };
      conn.on('error', (err) => {
        marked.__knex__disposed = err;
      });
      conn.on('end', () => {
        marked.__knex__disposed ??= 'Connection ended unexpectedly';
      });
      return conn;
    });
}

/** Marks a pooled connection so knex's pool destroys it instead of handing it out again. */
export function discardConnection(connection: unknown, reason: unknown): void {
  if (connection !== null && typeof connection === 'object') (connection as { __knex__disposed?: unknown }).__knex__disposed = reason;
}
