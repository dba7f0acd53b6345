import type { Knex } from 'knex';

/**
 * Expand: the W3C traceparent of the request (or the step) that put a step on the queue, so its
 * dispatch, its run and the steps after it carry the same trace id in every log. Nullable: rows
 * written before it, and by servers of an older release during a rolling upgrade, have none.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('steps', (t) => {
    t.string('trace_parent', 55).nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('steps', (t) => {
    t.dropColumn('trace_parent');
  });
}
