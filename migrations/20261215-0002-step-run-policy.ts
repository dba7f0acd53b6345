import type { Knex } from 'knex';

/**
 * The re-run policy of each queued step (ADR 0020), copied from its flow step when it is queued:
 * after a lost run, run again (`on_failover = 'rerun'`) until `max_runs` runs were lost, or stop
 * at once (`'abort'`); `lost_runs` counts them, and a step the policy stops is `quarantined` with
 * its reason. The defaults are those of a flow that says nothing (STEP_RUN_DEFAULTS when this
 * landed), so rows queued by servers of the previous release (a rolling upgrade) get them too.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('steps', (t) => {
    t.string('on_failover', 8).notNullable().defaultTo('rerun');
    t.integer('max_runs').notNullable().defaultTo(3);
    t.integer('lost_runs').notNullable().defaultTo(0);
    t.string('quarantine_reason', 32).nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('steps', (t) => {
    t.dropColumn('quarantine_reason');
    t.dropColumn('lost_runs');
    t.dropColumn('max_runs');
    t.dropColumn('on_failover');
  });
}
