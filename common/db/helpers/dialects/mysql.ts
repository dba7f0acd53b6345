import type { Knex } from 'knex';
import { DialectHelpers } from '../types.js';

export class MysqlHelpers extends DialectHelpers {
  override readonly name = 'mysql' as const;
  override readonly maxIdentifierLength = 64;

  // MySQL TIMESTAMP ends in 2038 and MariaDB < 10.10 adds ON UPDATE CURRENT_TIMESTAMP to the
  // first TIMESTAMP column; DATETIME(3) holds UTC because every connection uses time zone 'Z'.
  override timestamp(t: Knex.CreateTableBuilder, column: string): Knex.ColumnBuilder {
    return t.datetime(column, { precision: 3 });
  }

  // BLOB holds 64 KiB; patch chunks are larger.
  override blob(t: Knex.CreateTableBuilder, column: string): Knex.ColumnBuilder {
    return t.specificType(column, 'longblob');
  }

  // No RETURNING in MySQL/MariaDB; the driver hands back the auto-increment id.
  override async insertReturningId(db: Knex | Knex.Transaction, table: string, row: Record<string, unknown>): Promise<number> {
    const [id] = await db(table).insert(row);
    return Number(id);
  }

  // Backslash is already MySQL's LIKE escape, and inside a MySQL string literal `'\'` would
  // itself need escaping; so no ESCAPE clause.
  override contains(column: string, term: string): Knex.Raw {
    const escaped = term.replace(/[\\%_]/g, (c) => `\\${c}`);
    return this.knex.raw('?? LIKE ?', [column, `%${escaped}%`]);
  }

  // mysql2 answers raw() with [rows, fields].
  override rawRows(result: unknown): Record<string, unknown>[] {
    return (result as [Record<string, unknown>[]])[0];
  }

  override now(): Knex.Raw {
    return this.knex.raw('UTC_TIMESTAMP(3)');
  }

  override nowPlusMs(ms: number): Knex.Raw {
    return this.knex.raw('TIMESTAMPADD(MICROSECOND, ?, UTC_TIMESTAMP(3))', [Math.round(ms) * 1000]);
  }

  override selectNowSql(): string {
    return 'SELECT UTC_TIMESTAMP(3) AS now';
  }

  // MySQL has no sequences (MariaDB's need 10.3): a one-column AUTO_INCREMENT table stands in.
  // InnoDB hands out auto-increment values under a statement-long mutex, not the row lock, keeps
  // them on rollback, and (MySQL 8, MariaDB 10.2.4+) across restarts. One tiny row per ticket.
  override async createSequence(db: Knex, name: string, start: number): Promise<void> {
    await db.raw(
      `CREATE TABLE IF NOT EXISTS ${this.seq(name)} (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB AUTO_INCREMENT=${this.startValue(start)}`,
    );
  }

  override async nextSequenceValue(db: Knex | Knex.Transaction, name: string): Promise<number> {
    const [header] = (await db.raw(`INSERT INTO ${this.seq(name)} () VALUES ()`)) as [{ insertId: number | string }];
    return Number(header.insertId);
  }

  override async dropSequence(db: Knex, name: string): Promise<void> {
    await db.raw(`DROP TABLE IF EXISTS ${this.seq(name)}`);
  }
}
