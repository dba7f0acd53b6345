import type { Knex } from 'knex';

/**
 * What the retention purge of the active booster looks rows up by (booster_events already has
 * its created_at index): finished steps by state and last change, license audit rows by age.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('steps', (t) => {
    t.index(['state', 'updated_at'], 'steps_state_updated_ix');
  });
  await knex.schema.alterTable('license_audit', (t) => {
    t.index(['created_at'], 'license_audit_created_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('license_audit', (t) => {
    t.dropIndex(['created_at'], 'license_audit_created_ix');
  });
  await knex.schema.alterTable('steps', (t) => {
    t.dropIndex(['state', 'updated_at'], 'steps_state_updated_ix');
  });
}
