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
}
