import { readFileSync } from 'node:fs';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type Database } from '../../common/db/create-database.js';
import { getHelpers } from '../../common/db/helpers/index.js';
import { migrateLatest, migrationStatus } from '../../common/db/migrate.js';
import { CommonErrors } from '../../common/errors.js';
import { createTestDatabase, dbConfig, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { runOmflow as runCli } from '../helpers/processes.js';

async function schemaOf(knex: Knex, vendor: string): Promise<string[]> {
  if (vendor === 'postgres') {
    const r = await knex.raw(
      `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2`,
    );
    const ix = await knex.raw(`SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2`);
    return [...r.rows.map((c: any) => Object.values(c).join(' ')), ...ix.rows.map((c: any) => Object.values(c).join(' '))];
  }
  const [cols] = await knex.raw(
    `SELECT table_name, column_name, column_type, is_nullable FROM information_schema.columns WHERE table_schema = DATABASE() ORDER BY 1, 2`,
  );
  const [ix] = await knex.raw(
    `SELECT table_name, index_name, column_name, non_unique FROM information_schema.statistics WHERE table_schema = DATABASE() ORDER BY 1, 2, 3`,
  );
  return [...cols.map((c: any) => Object.values(c).join(' ')), ...ix.map((c: any) => Object.values(c).join(' '))];
}

for (const vendor of vendorsUnderTest().filter((v) => v === 'postgres' || v === 'mysql')) {
  describe(`migrations on ${vendor}`, () => {
    let t: TestDatabase;
    beforeAll(async () => {
      t = await createTestDatabase(vendor);
    });
    afterAll(async () => {
      await t?.drop();
    });

    // Two processes run every migration under knex's lock; on a loaded two-core CI machine MariaDB DDL is slow.
    it('two concurrent `omflow migrate latest` both succeed; rollback then latest leaves the same schema', { timeout: 240_000 }, async () => {
      const env = { OMFLOW_DB_URL: t.url };
      const [a, b] = await Promise.all([runCli(['migrate', 'latest'], env), runCli(['migrate', 'latest'], env)]);
      expect([a.code, b.code], a.stderr + b.stderr).toEqual([0, 0]);
      const before = await schemaOf(t.knex, vendor);
      expect(before.some((l) => l.startsWith('steps '))).toBe(true);
      expect((await migrationStatus(t.knex)).pending).toEqual([]);

      const rolled = await runCli(['migrate', 'rollback', '--all'], env);
      expect(rolled.code, rolled.stderr).toBe(0);
      expect((await schemaOf(t.knex, vendor)).filter((l) => !l.startsWith('knex_'))).toEqual([]);

      const again = await runCli(['migrate', 'latest'], env);
      expect(again.code, again.stderr).toBe(0);
      expect(await schemaOf(t.knex, vendor)).toEqual(before);
      const status = await runCli(['migrate', 'status'], env);
      expect(status.stdout).toMatch(/up to date/);
    });

    it('stores and reads back timestamps, JSON text, booleans and blobs through the helpers', async () => {
      await migrateLatest(t.knex);
      const h = getHelpers(t.knex);
      const big = Buffer.alloc(300_000, 7);
      const patchId = await h.insertReturningId(t.knex, 'patches', {
        version: '1.2.3',
        sequence: 5,
        manifest_b64: 'e30=',
        signature_b64: 'c2ln',
        key_id: 'k1',
        archive_sha256: 'a'.repeat(64),
        archive_size: big.length,
        chunk_size: big.length,
        chunk_count: 1,
        created_at: h.now(),
      });
      await t.knex('patch_chunks').insert({ patch_id: patchId, chunk_index: 0, data: big });
      const chunk = await t.knex('patch_chunks').where({ patch_id: patchId }).first();
      expect(h.toBuffer(chunk.data).equals(big)).toBe(true);
      const dbNow = await t.db.now();
      expect(Math.abs(dbNow.getTime() - Date.now())).toBeLessThan(60_000);
      await t.knex('servers').insert({
        id: 'n1',
        url: 'http://127.0.0.1:1',
        draining: true,
        last_load: JSON.stringify({ a: 1 }),
        registered_at: h.nowPlusMs(-1000),
        updated_at: h.now(),
      });
      const s = await t.knex('servers').where({ id: 'n1' }).first();
      expect(h.toBool(s.draining)).toBe(true);
      expect(h.fromJson(s.last_load)).toEqual({ a: 1 });
      expect(h.toDate(s.registered_at)!.getTime()).toBeLessThan(dbNow.getTime() + 50);
    });

    it('contains() takes the search term literally: % _ and \\ match only themselves', async () => {
      await migrateLatest(t.knex);
      const h = getHelpers(t.knex);
      for (const username of ['lit_50%_off', 'litx50yzoff', 'lit\\back', 'litback'])
        await t.knex('users').insert({ username, display_name: 'L', password_hash: 'x', created_at: h.now(), updated_at: h.now() });
      const find = async (term: string) =>
        (await t.knex('users').where(h.contains('username', term)).orderBy('username').select('username')).map((r) => r.username);
      expect(await find('_50%_')).toEqual(['lit_50%_off']);
      expect(await find('t\\b')).toEqual(['lit\\back']);
      expect(await find('lit')).toHaveLength(4);
      expect((await t.db.now()).getTime()).toBeGreaterThan(0);
    });

    it('insertWithChildren: a row and its children in one atomic statement on PostgreSQL, prepared once per connection; nothing elsewhere', async () => {
      await t.knex.schema.createTable('iwc_parent', (tb) => {
        tb.bigIncrements('id');
        tb.string('code', 16).notNullable();
        tb.string('tag', 36).notNullable();
      });
      await t.knex.schema.createTable('iwc_child', (tb) => {
        tb.bigIncrements('id');
        tb.bigInteger('parent_id').notNullable();
        tb.string('label', 8).notNullable();
      });
      await t.knex.schema.createTable('iwc_note', (tb) => {
        tb.bigIncrements('id');
        tb.bigInteger('parent_id').notNullable();
        tb.text('body').notNullable();
      });
      // One connection: the prepared statement, if any, is on it.
      const run = async (preparedStatements: boolean, f: (db: Database) => Promise<void>) => {
        const db = createDatabase(dbConfig(t.url, { poolMax: 1, preparedStatements }));
        try {
          await f(db);
        } finally {
          await db.destroy();
        }
      };
      const insert = (db: Database, code: string, labels: string[]) =>
        getHelpers(db.knex).insertWithChildren(
          db.knex,
          'iwc_parent',
          { code, tag: '1' },
          ['id', 'code'],
          [{ table: 'iwc_child', fk: 'parent_id', rows: labels.map((label) => ({ label })) }],
        );
      const prepared = async (db: Database) => Number((await db.knex.raw('SELECT count(*) AS n FROM pg_prepared_statements')).rows[0].n);
      const children = async (parentId: unknown) =>
        (
          await t
            .knex('iwc_child')
            .where({ parent_id: Number(parentId) })
            .orderBy('id')
            .select('label')
        ).map((r) => r.label);

      if (vendor !== 'postgres') {
        await run(true, async (db) => expect(await insert(db, 'a', ['x'])).toBeNull());
        expect(await t.knex('iwc_parent').count({ n: '*' }).first()).toMatchObject({ n: 0 });
        return;
      }
      await run(true, async (db) => {
        const first = await insert(db, 'a', ['x', 'y', 'z']);
        expect(first).toMatchObject({ code: 'a' });
        expect(await children(first!.id)).toEqual(['x', 'y', 'z']);
        await insert(db, 'b', ['x', 'y', 'z']);
        expect(await prepared(db)).toBe(1);
        // A column type changed under a running process (a schema patch during a rolling upgrade):
        // the prepared statement's result stays the same type, so it keeps working.
        await t.knex.raw('ALTER TABLE iwc_parent ALTER COLUMN code TYPE varchar(32)');
        expect(await insert(db, 'c-after-alter', ['x', 'y', 'z'])).toMatchObject({ code: 'c-after-alter' });
        // A column it writes changes type (varchar → integer): the statement prepared with a varchar
        // parameter cannot be re-planned, on that connection, ever. That run fails; its connection
        // is discarded, and the next run prepares the statement again against the new schema.
        await t.knex.raw('ALTER TABLE iwc_parent ALTER COLUMN tag TYPE integer USING 0');
        await expect(insert(db, 'stale', ['x', 'y', 'z'])).rejects.toThrow(/is of type integer/);
        expect(await insert(db, 'fresh', ['x', 'y', 'z'])).toMatchObject({ code: 'fresh' });
        expect(await prepared(db)).toBe(1);
        // A child the database refuses: nothing of the statement is written.
        await expect(insert(db, 'd', ['x', 'too-long-label'])).rejects.toSatisfy((e) => CommonErrors.COMMON_ERR_DB_TOO_LONG.is(e));
        expect(await t.knex('iwc_parent').where({ code: 'd' }).count({ n: '*' }).first()).toMatchObject({ n: 0 });
        // A later set names an earlier one's new id inside JSON text, written as JSON.stringify would.
        const h = getHelpers(db.knex);
        const withNote = await h.insertWithChildren(
          db.knex,
          'iwc_parent',
          { code: 'f', tag: 1 },
          ['id'],
          [
            { table: 'iwc_child', fk: 'parent_id', rows: [{ label: 'named' }], as: 'named_child' },
            { table: 'iwc_note', fk: 'parent_id', rows: [{ body: h.jsonTextWithInsertedId({ state: 'x', n: 1 }, 'childId', 'named_child') }] },
          ],
        );
        const child = await t
          .knex('iwc_child')
          .where({ parent_id: Number(withNote!.id) })
          .first('id');
        const note = await t
          .knex('iwc_note')
          .where({ parent_id: Number(withNote!.id) })
          .first('body');
        expect(note.body).toBe(JSON.stringify({ state: 'x', n: 1, childId: Number(child.id) }));
      });
      // OMFLOW_DB_PREPARED_STATEMENTS=false (a pooler that cannot keep them): the same write, unnamed.
      await run(false, async (db) => {
        expect(await children((await insert(db, 'e', ['x']))!.id)).toEqual(['x']);
        expect(await prepared(db)).toBe(0);
      });
    });

    it('translates driver errors into stable codes', async () => {
      await migrateLatest(t.knex);
      const h = getHelpers(t.knex);
      const row = { username: 'dup', display_name: 'D', password_hash: 'x', created_at: h.now(), updated_at: h.now() };
      await t.knex('users').insert(row);
      await expect(t.knex('users').insert(row)).rejects.toSatisfy((e) => CommonErrors.COMMON_ERR_DB_UNIQUE.is(e));
      await expect(t.knex('users').insert({ ...row, username: 'x'.repeat(200) })).rejects.toSatisfy((e) => CommonErrors.COMMON_ERR_DB_TOO_LONG.is(e));
      await expect(t.knex('group_members').insert({ group_id: 999, user_id: 999 })).rejects.toSatisfy((e) => CommonErrors.COMMON_ERR_DB_FOREIGN_KEY.is(e));
      await expect(t.knex('users').insert({ ...row, username: 'y', display_name: null })).rejects.toSatisfy((e) => CommonErrors.COMMON_ERR_DB_NOT_NULL.is(e));
    });
  });
}

describe('database configuration errors', () => {
  it('a wrong configuration exits non-zero listing every key, and touches nothing', async () => {
    const r = await runCli(['migrate', 'latest'], {
      OMFLOW_DB_URL: 'sqlite:///tmp/x.db',
      OMFLOW_DB_POOL_MAX: 'x',
    });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/COMMON_ERR_CONFIG_INVALID/);
    expect(r.stderr).toMatch(/OMFLOW_DB_URL: SQLite is refused/);
    expect(r.stderr).toMatch(/OMFLOW_DB_POOL_MAX/);
  });

  it('`omflow --version` prints the release version; `omflow --help` lists every command', async () => {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    expect((await runCli(['--version'], {})).stdout.trim()).toBe(version);
    const help = await runCli(['--help'], {});
    for (const cmd of ['booster', 'agent', 'server', 'dev', 'migrate', 'license', 'patch', 'status'])
      expect(help.stdout).toMatch(new RegExp(`^  ${cmd} `, 'm'));
  });

  it('an unreachable database is a connection error with its code', async () => {
    const db = createDatabase({
      url: 'postgres://u:p@127.0.0.1:1/x',
      client: 'postgres',
      host: '',
      port: undefined,
      name: '',
      user: '',
      password: undefined,
      ssl: false,
      poolMin: 0,
      poolMax: 1,
      connectTimeoutMs: 1000,
    });
    await expect(db.knex.raw('select 1')).rejects.toSatisfy((e) => CommonErrors.COMMON_ERR_DB_CONNECTION.is(e));
    await db.destroy();
  });
});
