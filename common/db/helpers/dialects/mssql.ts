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
}
