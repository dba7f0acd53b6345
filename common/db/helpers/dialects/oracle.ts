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

  // No IF NOT EXISTS before 23c: ORA-00955 (name already used) means it exists. ORDER keeps
  // values increasing across RAC instances.
  override async createSequence(db: Knex, name: string, start: number): Promise<void> {
    await db.raw(
      `BEGIN EXECUTE IMMEDIATE 'CREATE SEQUENCE ${this.seq(name)} START WITH ${this.startValue(start)} ORDER'; EXCEPTION WHEN OTHERS THEN IF SQLCODE != -955 THEN RAISE; END IF; END;`,
    );
  }

  override async nextSequenceValue(db: Knex | Knex.Transaction, name: string): Promise<number> {
    return Number(this.rawRows(await db.raw(`SELECT ${this.seq(name)}.NEXTVAL AS "n" FROM DUAL`))[0].n);
  }

  override async dropSequence(db: Knex, name: string): Promise<void> {
    await db.raw(`BEGIN EXECUTE IMMEDIATE 'DROP SEQUENCE ${this.seq(name)}'; EXCEPTION WHEN OTHERS THEN IF SQLCODE != -2289 THEN RAISE; END IF; END;`);
  }

  // Oracle documents no order for the identity values of a multi-row insert (INSERT ALL / INSERT … SELECT), so one row per statement.
  override async insertRowsInOrder(db: Knex | Knex.Transaction, table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    for (const row of rows) await db(table).insert(row);
  }
}
