import type { Knex } from 'knex';
import { DialectHelpers } from '../types.js';

export class OracleHelpers extends DialectHelpers {
  override readonly name = 'oracle' as const;
  // ORA-00972: identifiers are limited to 30 bytes before 12.2 (thin mode supports 12.1).
  override readonly maxIdentifierLength = 30;

  override now(): Knex.Raw {
    return this.knex.raw('SYSTIMESTAMP');
  }

  // Oracle has no `+ interval * n`; NUMTODSINTERVAL builds one from seconds.
  override nowPlusMs(ms: number): Knex.Raw {
    return this.knex.raw(`SYSTIMESTAMP + NUMTODSINTERVAL(? / 1000, 'SECOND')`, [Math.round(ms)]);
  }

  // Oracle needs a FROM clause in every SELECT.
  override pingSql(): string {
    return 'SELECT 1 FROM DUAL';
  }

  // Unquoted aliases are upper-cased by Oracle.
  override selectNowSql(): string {
    return 'SELECT SYSTIMESTAMP AS "now" FROM DUAL';
  }
}
