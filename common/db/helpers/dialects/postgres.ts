import type { Knex } from 'knex';
import { DialectHelpers } from '../types.js';

export class PostgresHelpers extends DialectHelpers {
  override readonly name = 'postgres' as const;

  // CURRENT_TIMESTAMP is frozen at transaction start in PostgreSQL; leases need wall time.
  override now(): Knex.Raw {
    return this.knex.raw('clock_timestamp()');
  }

  override nowPlusMs(ms: number): Knex.Raw {
    return this.knex.raw(`clock_timestamp() + (? * INTERVAL '1 millisecond')`, [Math.round(ms)]);
  }

  override selectNowSql(): string {
    return 'SELECT clock_timestamp() AS now';
  }

  // lpad truncates a longer string: pad to at least 6 digits, never cut one (as padStart does).
  override formattedSequenceValueInInsert(prefix: string, name: string): Knex.Raw {
    return this.knex.raw(`(SELECT ?::text || '-' || lpad(n::text, greatest(6, length(n::text)), '0') FROM (SELECT nextval(?) AS n) s)`, [
      prefix,
      this.seq(name),
    ]);
  }
}
