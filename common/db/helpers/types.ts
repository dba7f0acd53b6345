import type { Knex } from 'knex';
import type { DbClientName } from '../../config/areas/database.js';

/** The query option that asks for a prepared statement (see `prepared`, `namePreparedStatements`). */
export const PREPARE_OPTION = 'omflowPrepare';

/** Rows for insertWithChildren: `fk` is set to the parent's new id; `as` names them for later sets. */
export interface ChildRows {
  table: string;
  fk: string;
  rows: readonly Record<string, unknown>[];
  as?: string;
}

/**
 * Everything that differs between the four vendors, in one place. The base class is the
 * portable behaviour; each dialect overrides only what its vendor forces, with the reason.
 */
export class DialectHelpers {
  readonly name: DbClientName = 'postgres';
  /** Longest table, column, index or constraint name the vendor accepts. */
  readonly maxIdentifierLength: number = 63;

  constructor(protected readonly knex: Knex) {}

  // ---- schema ----

  /** Timestamps are stored in UTC with millisecond precision. */
  timestamp(t: Knex.CreateTableBuilder, column: string): Knex.ColumnBuilder {
    return t.timestamp(column, { useTz: true, precision: 3 });
  }

  /**
   * A column referencing a bigIncrements id. MySQL makes those BIGINT UNSIGNED and refuses a
   * foreign key from a signed column (errno 150); the other vendors ignore `unsigned`.
   */
  foreignId(t: Knex.CreateTableBuilder, column: string): Knex.ColumnBuilder {
    return t.bigInteger(column).unsigned();
  }

  /** JSON documents are stored as text and parsed by the application: portable and indexable nowhere. */
  json(t: Knex.CreateTableBuilder, column: string): Knex.ColumnBuilder {
    return t.text(column, 'longtext');
  }

  longText(t: Knex.CreateTableBuilder, column: string): Knex.ColumnBuilder {
    return t.text(column, 'longtext');
  }

  /** Binary large object (patch chunks). */
  blob(t: Knex.CreateTableBuilder, column: string): Knex.ColumnBuilder {
    return t.binary(column);
  }

  // ---- sequences ----
  // Numbers handed out by the database outside any row lock: taking one never waits for another
  // transaction, and a rolled-back transaction does not give its number back (a gap).

  /** Name of the sequence numbering the tickets of `prefix` (prefixes match [A-Z][A-Z0-9]{0,9}). */
  ticketSequenceName(prefix: string): string {
    const name = `ticket_no_${prefix.toLowerCase()}`;
    // Interpolated into DDL (no bind parameters there): only these characters may pass.
    if (!/^[a-z0-9_]{1,30}$/.test(name)) throw new Error(`invalid sequence name ${name}`);
    return name;
  }

  /** Creates the sequence (first value `start`) unless it exists. Runs DDL: never inside a business transaction. */
  async createSequence(db: Knex, name: string, start: number): Promise<void> {
    await db.raw(`CREATE SEQUENCE IF NOT EXISTS ${this.seq(name)} START WITH ${this.startValue(start)}`);
  }

  /** The sequence's next value; inside a transaction it is taken at once and kept on rollback. */
  async nextSequenceValue(db: Knex | Knex.Transaction, name: string): Promise<number> {
    return Number(this.rawRows(await db.raw('SELECT nextval(?) AS n', [this.seq(name)]))[0].n);
  }

  /**
   * `${prefix}-${n padded to 6 digits}` with n the sequence's next value, as an expression an
   * INSERT evaluates itself (one round trip fewer than taking the value first); null where the
   * vendor cannot use a sequence there (the caller takes the value first).
   */
  formattedSequenceValueInInsert(_prefix: string, _name: string): Knex.Raw | null {
    return null;
  }

  async dropSequence(db: Knex, name: string): Promise<void> {
    await db.raw(`DROP SEQUENCE IF EXISTS ${this.seq(name)}`);
  }

  protected seq(name: string): string {
    if (!/^[a-z0-9_]{1,30}$/.test(name)) throw new Error(`invalid sequence name ${name}`);
    return name;
  }

  protected startValue(start: number): number {
    return Math.max(1, Math.floor(Number(start) || 1));
  }

  // ---- expressions ----

  /** The database's current time: the cluster's single clock. */
  now(): Knex.Raw {
    return this.knex.raw('CURRENT_TIMESTAMP');
  }

  /** Database time plus `ms` milliseconds (ms may be negative). */
  nowPlusMs(ms: number): Knex.Raw {
    return this.knex.raw(`CURRENT_TIMESTAMP + (? * INTERVAL '1 millisecond')`, [Math.round(ms)]);
  }

  /** `column LIKE '%term%'` with the term's own `%`, `_` and `\` taken literally. */
  contains(column: string, term: string): Knex.Raw {
    const escaped = term.replace(/[\\%_]/g, (c) => `\\${c}`);
    return this.knex.raw(`?? LIKE ? ESCAPE '\\'`, [column, `%${escaped}%`]);
  }

  /** Rows of a `knex.raw()` result: each driver shapes it differently. */
  rawRows(result: unknown): Record<string, unknown>[] {
    if (Array.isArray(result)) return result as Record<string, unknown>[];
    return ((result as { rows?: Record<string, unknown>[] }).rows ?? []) as Record<string, unknown>[];
  }

  /** The cheapest round trip, for readiness checks. */
  pingSql(): string {
    return 'SELECT 1';
  }

  /** A SELECT returning the database time as column `now`. */
  selectNowSql(): string {
    return 'SELECT CURRENT_TIMESTAMP AS now';
  }

  // ---- values ----

  toBool(value: unknown): boolean {
    return value === true || value === 1 || value === '1' || value === 't' || value === 'true';
  }

  toDate(value: unknown): Date | null {
    if (value === null || value === undefined) return null;
    return value instanceof Date ? value : new Date(value as string);
  }

  /** JSON columns: parse what we stored as text. */
  fromJson<T = unknown>(value: unknown): T | null {
    if (value === null || value === undefined) return null;
    if (typeof value === 'string') return JSON.parse(value) as T;
    if (Buffer.isBuffer(value)) return JSON.parse(value.toString('utf8')) as T;
    return value as T;
  }

  toBuffer(value: unknown): Buffer {
    if (Buffer.isBuffer(value)) return value;
    if (value instanceof Uint8Array) return Buffer.from(value);
    throw new TypeError('expected binary column value');
  }

  /** Inserts one row and returns its generated `id`. */
  async insertReturningId(db: Knex | Knex.Transaction, table: string, row: Record<string, unknown>): Promise<number> {
    return this.insertedId(await db(table).insert(row, ['id']));
  }

  /**
   * Inserts rows whose generated ids must follow the order given (history read back by id), in
   * as few round trips as the vendor allows. PostgreSQL assigns a multi-row VALUES list's
   * identities in list order, and so does MySQL/InnoDB for such "simple inserts"
   * (consecutive auto-increment values), so one statement does.
   */
  async insertRowsInOrder(db: Knex | Knex.Transaction, table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    if (rows.length) await db(table).insert(rows as Record<string, unknown>[]);
  }

  /**
   * Marks a hot statement to run as a prepared statement where the vendor's driver supports it
   * (PostgreSQL, unless OMFLOW_DB_PREPARED_STATEMENTS=false): parsed and planned once per
   * connection. Only for statements whose result columns never change type: no `SELECT *` (a
   * column added by a patch would make PostgreSQL refuse the plan).
   */
  prepared<T extends Knex.QueryBuilder>(q: T): T {
    return q;
  }

  /**
   * `(SELECT id FROM table WHERE column = value)` as a value of the INSERT or UPDATE that needs it
   * (`column` unique): the write looks the id up itself, NULL when there is no such row, one round
   * trip fewer than reading it first. Null where the vendor takes no subquery in INSERT … VALUES.
   */
  idLookedUpInWrite(db: Knex, table: string, column: string, value: string | number): Knex.QueryBuilder | null {
    return db(table).where(column, value).select('id');
  }

  /**
   * Inserts `row` into `table` and, in the SAME statement, child rows that point at it (`fk` set to
   * the new row's `id`; each table's ids in list order, as insertRowsInOrder). A child set named
   * `as` can be referred to by later sets' values (jsonTextWithInsertedId). One statement is atomic
   * on its own, so a creation this way needs no transaction: no BEGIN, no COMMIT, one round trip
   * instead of several. Returns the new row's `returning` columns as text, or null where the
   * vendor cannot (nothing is written then; the caller inserts in a transaction).
   */
  async insertWithChildren(
    _db: Knex | Knex.Transaction,
    _table: string,
    _row: Record<string, unknown>,
    _returning: readonly string[],
    _children: readonly ChildRows[],
  ): Promise<Record<string, string> | null> {
    return null;
  }

  /**
   * Inside insertWithChildren: the JSON text of `value` with `key` set to the id of the one row
   * inserted as `as`, exactly as JSON.stringify writes it. Null where insertWithChildren is not
   * supported.
   */
  jsonTextWithInsertedId(_value: Record<string, unknown>, _key: string, _as: string): Knex.Raw | null {
    return null;
  }

  /** Id of the row just inserted by `insert(...).returning('id')`. */
  insertedId(rows: unknown[]): number {
    const first = rows[0] as unknown;
    if (typeof first === 'number' || typeof first === 'string') return Number(first);
    return Number((first as { id: unknown }).id);
  }
}
