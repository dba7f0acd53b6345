import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  await knex.schema.createTable('flows', (t) => {
    t.bigIncrements('id').primary('flows_pk');
    t.string('flow_key', 64).notNullable().unique({ indexName: 'flows_key_uq' });
    t.string('name', 255).notNullable();
    t.string('ticket_prefix', 16).notNullable();
    t.integer('sla_hours').nullable();
    t.integer('latest_version').notNullable().defaultTo(0);
    h.timestamp(t, 'created_at').notNullable();
    h.timestamp(t, 'updated_at').notNullable();
  });
  await knex.schema.createTable('flow_versions', (t) => {
    t.bigIncrements('id').primary('flow_versions_pk');
    h.foreignId(t, 'flow_id').notNullable().references('id').inTable('flows').onDelete('CASCADE').withKeyName('flow_versions_flow_fk');
    t.integer('version').notNullable();
    h.json(t, 'definition').notNullable();
    t.bigInteger('created_by').nullable();
    h.timestamp(t, 'created_at').notNullable();
    t.unique(['flow_id', 'version'], { indexName: 'flow_versions_uq' });
  });
  await knex.schema.createTable('forms', (t) => {
    t.bigIncrements('id').primary('forms_pk');
    t.string('form_key', 64).notNullable().unique({ indexName: 'forms_key_uq' });
    t.string('title', 255).notNullable();
    t.string('description', 2000).nullable();
    h.json(t, 'fields').notNullable();
    h.foreignId(t, 'flow_id').nullable().references('id').inTable('flows').withKeyName('forms_flow_fk');
    t.boolean('published').notNullable().defaultTo(true);
    h.timestamp(t, 'created_at').notNullable();
    h.timestamp(t, 'updated_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('forms');
  await knex.schema.dropTable('flow_versions');
  await knex.schema.dropTable('flows');
}
