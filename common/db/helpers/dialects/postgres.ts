import type { Knex } from 'knex';
import { type ChildRows, DialectHelpers, PREPARE_OPTION } from '../types.js';

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

  // Data-modifying CTEs: every one runs exactly once, to completion, within the one statement.
  // Columns come back as text: the statement's result type then never changes, which a named
  // (prepared) statement needs (a schema patch changing a column's type would otherwise make
  // PostgreSQL refuse it: "cached plan must not change result type").
  override async insertWithChildren(
    db: Knex | Knex.Transaction,
    table: string,
    row: Record<string, unknown>,
    returning: readonly string[],
    children: readonly ChildRows[],
  ): Promise<Record<string, string>> {
    const newId = db.raw('(SELECT "id" FROM "new_row")');
    const q = db.with('new_row', db(table).insert(row, [...new Set(['id', ...returning])]));
    children.forEach((c, i) => {
      if (!c.rows.length) return;
      const insert = db(c.table).insert(c.rows.map((r) => ({ ...r, [c.fk]: newId })));
      q.with(c.as ?? `children_${i}`, c.as ? insert.returning('id') : insert);
    });
    q.select(returning.map((c) => db.raw('??::text AS ??', [c, c]))).from('new_row');
    const [created] = (await this.prepared(q)) as Record<string, string>[];
    return created;
  }

  override jsonTextWithInsertedId(value: Record<string, unknown>, key: string, as: string): Knex.Raw {
    if (key in value) throw new Error(`${key} is set already`);
    // JSON.stringify puts the added key last: the text is the same as it would write.
    const text = JSON.stringify({ ...value, [key]: 0 });
    return this.knex.raw(`(SELECT ? || "id"::text || '}' FROM ??)`, [text.slice(0, -2), as]);
  }

  override prepared<T extends Knex.QueryBuilder>(q: T): T {
    return q.options({ [PREPARE_OPTION]: true }) as T;
  }
}
