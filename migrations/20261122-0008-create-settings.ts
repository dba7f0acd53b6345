import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  await knex.schema.createTable('settings', (t) => {
    t.string('setting_key', 128).primary('settings_pk');
    h.longText(t, 'setting_value').notNullable();
    t.string('updated_by', 128).nullable();
    h.timestamp(t, 'updated_at').notNullable();
  });
  await knex.schema.createTable('audit_log', (t) => {
    t.bigIncrements('id').primary('audit_log_pk');
    t.string('actor', 128).nullable();
    t.string('action', 64).notNullable();
    t.string('target', 255).nullable();
    t.string('result', 64).notNullable();
    h.json(t, 'details').nullable();
    h.timestamp(t, 'created_at').notNullable();
    t.index(['created_at'], 'audit_log_created_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('audit_log');
  await knex.schema.dropTable('settings');
}
