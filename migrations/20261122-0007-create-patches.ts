import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  // The database carries patches; it is never trusted for their integrity (agents verify).
  await knex.schema.createTable('patches', (t) => {
    t.bigIncrements('id').primary('patches_pk');
    t.string('version', 64).notNullable().unique({ indexName: 'patches_version_uq' });
    t.bigInteger('sequence').notNullable().unique({ indexName: 'patches_sequence_uq' });
    // Exact signed bytes, base64: text columns may normalise whitespace or encoding.
    h.longText(t, 'manifest_b64').notNullable();
    t.string('signature_b64', 255).notNullable();
    t.string('key_id', 64).notNullable();
    t.string('archive_sha256', 64).notNullable();
    t.bigInteger('archive_size').notNullable();
    t.integer('chunk_size').notNullable();
    t.integer('chunk_count').notNullable();
    t.string('applied_by', 128).nullable();
    t.string('applied_on', 64).nullable();
    h.timestamp(t, 'created_at').notNullable();
  });
  await knex.schema.createTable('patch_chunks', (t) => {
    h.foreignId(t, 'patch_id').notNullable().references('id').inTable('patches').onDelete('CASCADE').withKeyName('patch_chunks_patch_fk');
    t.integer('chunk_index').notNullable();
    h.blob(t, 'data').notNullable();
    t.primary(['patch_id', 'chunk_index'], 'patch_chunks_pk');
  });
  await knex.schema.createTable('rollouts', (t) => {
    t.bigIncrements('id').primary('rollouts_pk');
    h.foreignId(t, 'patch_id').notNullable().references('id').inTable('patches').withKeyName('rollouts_patch_fk');
    t.string('version', 64).notNullable();
    t.string('state', 16).notNullable();
    t.integer('parallelism').notNullable().defaultTo(1);
    t.string('halted_reason', 2000).nullable();
    h.timestamp(t, 'started_at').notNullable();
    h.timestamp(t, 'updated_at').notNullable();
    h.timestamp(t, 'finished_at').nullable();
    t.index(['state'], 'rollouts_state_ix');
  });
  await knex.schema.createTable('rollout_nodes', (t) => {
    h.foreignId(t, 'rollout_id').notNullable().references('id').inTable('rollouts').onDelete('CASCADE').withKeyName('rollout_nodes_rollout_fk');
    t.string('server_id', 64).notNullable();
    t.string('state', 16).notNullable();
    t.string('from_version', 64).nullable();
    t.string('to_version', 64).notNullable();
    t.string('error', 2000).nullable();
    h.timestamp(t, 'updated_at').notNullable();
    t.primary(['rollout_id', 'server_id'], 'rollout_nodes_pk');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('rollout_nodes');
  await knex.schema.dropTable('rollouts');
  await knex.schema.dropTable('patch_chunks');
  await knex.schema.dropTable('patches');
}
