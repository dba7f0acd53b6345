import type { Knex } from 'knex';

/**
 * One bounded batch of a purge: the ids of at most `limit` matching rows, oldest first, then one
 * DELETE of exactly those. Two statements, portable to all four vendors (MySQL takes no LIMIT in
 * an IN subquery), and each holds its locks for at most `limit` rows. Returns how many went.
 */
export async function deleteBatch(knex: Knex, table: string, filter: (q: Knex.QueryBuilder) => void, limit: number): Promise<number> {
  const q = knex(table).select('id');
  filter(q);
  const ids: (string | number)[] = (await q.orderBy('id').limit(limit)).map((r: { id: string | number }) => r.id);
  if (ids.length === 0) return 0;
  return Number(await knex(table).whereIn('id', ids).del());
}
