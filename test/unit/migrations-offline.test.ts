import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR } from '../../common/db/migrate.js';
import { getHelpers } from '../../common/db/helpers/index.js';
import { offlineKnex } from '../helpers/offline-knex.js';

const files = readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{8}-\d{4}-[a-z0-9-]+\.ts$/.test(f)).sort();

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
