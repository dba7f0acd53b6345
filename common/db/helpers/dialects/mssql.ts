import type { Knex } from 'knex';
import { DialectHelpers } from '../types.js';

export class MssqlHelpers extends DialectHelpers {
  override readonly name = 'mssql' as const;
  override readonly maxIdentifierLength = 128;

  // `[` opens a character class in T-SQL LIKE patterns.
  override contains(column: string, term: string): Knex.Raw {
    const escaped = term.replace(/[\\%_[]/g, (c) => `\\${c}`);
    return this.knex.raw(`?? LIKE ? ESCAPE '\\'`, [column, `%${escaped}%`]);
  }

  // "Subqueries are not allowed in this context" in INSERT … VALUES: the caller reads the id first.
  override idLookedUpInWrite(): null {
    return null;
  }

  // T-SQL has no INTERVAL type.
  override now(): Knex.Raw {
    return this.knex.raw('SYSDATETIMEOFFSET()');
  }

  override nowPlusMs(ms: number): Knex.Raw {
    return this.knex.raw('DATEADD(millisecond, ?, SYSDATETIMEOFFSET())', [Math.round(ms)]);
  }

  override selectNowSql(): string {
    return 'SELECT SYSDATETIMEOFFSET() AS now';
  }

  // No CREATE SEQUENCE IF NOT EXISTS in T-SQL; NEXT VALUE FOR replaces nextval().
  override async createSequence(db: Knex, name: string, start: number): Promise<void> {
    await db.raw(
      `IF OBJECT_ID(N'${this.seq(name)}', N'SO') IS NULL EXEC(N'CREATE SEQUENCE ${this.seq(name)} AS BIGINT START WITH ${this.startValue(start)} INCREMENT BY 1')`,
    );
  }

  override async nextSequenceValue(db: Knex | Knex.Transaction, name: string): Promise<number> {
    return Number(this.rawRows(await db.raw(`SELECT NEXT VALUE FOR ${this.seq(name)} AS n`))[0].n);
  }

  // SQL Server documents no order for the IDENTITY values of a multi-row INSERT (only INSERT … SELECT … ORDER BY), so one row per statement.
  override async insertRowsInOrder(db: Knex | Knex.Transaction, table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    for (const row of rows) await db(table).insert(row);
  }
}
