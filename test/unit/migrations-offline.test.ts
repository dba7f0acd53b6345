import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { getHelpers } from '../../common/db/helpers/index.js';
import { MIGRATIONS_DIR } from '../../common/db/migrate.js';
import { offlineKnex } from '../helpers/offline-knex.js';

const files = readdirSync(MIGRATIONS_DIR)
  .filter((f) => /^\d{8}-\d{4}-[a-z0-9-]+\.ts$/.test(f))
  .sort();

/** Every identifier the statement names: "quoted" (Oracle, PostgreSQL) or [bracketed] (SQL Server). */
function identifiers(sql: string): string[] {
  const out: string[] = [];
  for (const m of sql.matchAll(/"([^"]+)"|\[([^\]]+)\]/g)) out.push(m[1] ?? m[2]);
  return out;
}

describe('migrations compile offline for every vendor', () => {
  it('has migrations named by date and kebab-case', () => {
    expect(files.length).toBeGreaterThan(0);
    expect(readdirSync(MIGRATIONS_DIR).filter((f) => !files.includes(f))).toEqual([]);
  });

  for (const client of ['mssql', 'oracledb'] as const) {
    describe(client, () => {
      for (const file of files) {
        it(`${file}: up and down compile and every identifier fits`, async () => {
          const mod = await import(pathToFileURL(join(MIGRATIONS_DIR, file)).href);
          const { knex, statements } = offlineKnex(client);
          const limit = getHelpers(knex).maxIdentifierLength;
          await mod.up(knex);
          const upCount = statements.length;
          await mod.down(knex);
          expect(upCount).toBeGreaterThan(0);
          expect(statements.length).toBeGreaterThan(upCount);
          const tooLong = statements.flatMap(identifiers).filter((id) => Buffer.byteLength(id) > limit);
          expect(tooLong, `identifiers longer than ${limit} bytes in ${client}`).toEqual([]);
          await knex.destroy();
        });
      }
    });
  }

  // Ticket-number sequences are created at run time (flow deploy), so the migrations above do not show their SQL.
  it.each([
    [
      'mssql',
      /IF OBJECT_ID\(N'ticket_no_req', N'SO'\) IS NULL EXEC\(N'CREATE SEQUENCE ticket_no_req AS BIGINT START WITH 42/,
      /SELECT NEXT VALUE FOR ticket_no_req AS n/,
      /DROP SEQUENCE IF EXISTS ticket_no_req/,
    ],
    [
      'oracledb',
      /EXECUTE IMMEDIATE 'CREATE SEQUENCE ticket_no_req START WITH 42 ORDER'.*-955/,
      /SELECT ticket_no_req\.NEXTVAL AS "n" FROM DUAL/,
      /DROP SEQUENCE ticket_no_req'.*-2289/,
    ],
    ['pg', /CREATE SEQUENCE IF NOT EXISTS ticket_no_req START WITH 42/, /SELECT nextval\(\$1\) AS n/, /DROP SEQUENCE IF EXISTS ticket_no_req/],
    [
      'mysql2',
      /CREATE TABLE IF NOT EXISTS ticket_no_req \(id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY\) ENGINE=InnoDB AUTO_INCREMENT=42/,
      /INSERT INTO ticket_no_req \(\) VALUES \(\)/,
      /DROP TABLE IF EXISTS ticket_no_req/,
    ],
  ] as const)('%s: ticket-number sequence SQL compiles, named within the identifier limit', async (client, create, next, drop) => {
    const { knex, statements } = offlineKnex(client);
    const h = getHelpers(knex);
    const name = h.ticketSequenceName('REQ');
    expect(Buffer.byteLength(h.ticketSequenceName('ABCDEFGHIJ'))).toBeLessThanOrEqual(h.maxIdentifierLength);
    await h.createSequence(knex, name, 42);
    await h.nextSequenceValue(knex, name).catch(() => 0); // offline: no row comes back
    await h.dropSequence(knex, name);
    expect(statements[0]).toMatch(create);
    expect(statements.join('\n')).toMatch(next);
    expect(statements.at(-1)).toMatch(drop);
    expect(() => h.ticketSequenceName('REQ; DROP')).toThrow();
    await knex.destroy();
  });

  it('the identifier check fails on a name Oracle refuses', async () => {
    const { knex, statements } = offlineKnex('oracledb');
    await knex.schema.createTable('a_table_with_a_rather_long_name', (t) => {
      t.string('x').index();
    });
    const tooLong = statements.flatMap(identifiers).filter((id) => id.length > getHelpers(knex).maxIdentifierLength);
    expect(tooLong.length).toBeGreaterThan(0);
    await knex.destroy();
  });
});

describe('insertRowsInOrder: one statement where the vendor assigns ids in VALUES order, one per row elsewhere', () => {
  const rows = [
    { ticket_id: 1, action: 'create' },
    { ticket_id: 1, action: 'enter' },
  ];
  for (const [client, expected] of [
    ['pg', 1],
    ['mysql2', 1],
    ['mssql', 2],
    ['oracledb', 2],
  ] as const) {
    it(`${client}: ${expected} statement(s) for 2 rows, in the order given`, async () => {
      const { knex, statements } = offlineKnex(client);
      await getHelpers(knex).insertRowsInOrder(knex, 'ticket_history', rows);
      expect(statements).toHaveLength(expected);
      if (expected === 2) expect(statements.every((s) => /insert/i.test(s))).toBe(true);
      await knex.destroy();
    });
  }
});
