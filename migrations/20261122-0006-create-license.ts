import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  // A single row, id = 'cluster'; every time in it is the database's clock.
  await knex.schema.createTable('license_state', (t) => {
    t.string('id', 16).primary('license_state_pk');
    t.string('cluster_id', 64).notNullable();
    h.timestamp(t, 'trial_started_at').notNullable();
    // Highest time ever seen: a clock moved backwards never extends the trial.
    h.timestamp(t, 'high_water_at').notNullable();
    h.timestamp(t, 'clock_back_at').nullable();
    h.longText(t, 'license_text').nullable();
    t.string('license_id', 64).nullable();
    h.timestamp(t, 'uploaded_at').nullable();
    t.string('uploaded_by', 128).nullable();
    h.timestamp(t, 'updated_at').notNullable();
  });
  await knex.schema.createTable('license_audit', (t) => {
    t.bigIncrements('id').primary('license_audit_pk');
    t.string('actor', 128).nullable();
    t.string('result_code', 64).notNullable();
    t.string('license_id', 64).nullable();
    t.string('customer', 255).nullable();
    h.json(t, 'details').nullable();
    h.timestamp(t, 'created_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('license_audit');
  await knex.schema.dropTable('license_state');
}
