import type { Knex } from 'knex';
import { DialectHelpers } from '../types.js';

export class MssqlHelpers extends DialectHelpers {
  override readonly name = 'mssql' as const;
  override readonly maxIdentifierLength = 128;

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
