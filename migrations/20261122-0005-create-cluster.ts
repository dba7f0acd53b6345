import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  await knex.schema.createTable('servers', (t) => {
    t.string('id', 64).primary('servers_pk');
    t.string('url', 255).notNullable();
    t.string('agent_url', 255).nullable();
    t.string('version', 64).nullable();
    t.string('agent_state', 32).nullable();
    // Drain survives a takeover: the standby reads it from here.
    t.boolean('draining').notNullable().defaultTo(false);
    t.string('drain_reason', 255).nullable();
    t.integer('weight').notNullable().defaultTo(100);
    h.json(t, 'last_load').nullable();
    h.timestamp(t, 'registered_at').notNullable();
    h.timestamp(t, 'last_heartbeat_at').nullable();
    h.timestamp(t, 'updated_at').notNullable();
  });
  // A single row, name = 'leader'. The epoch only ever grows.
  await knex.schema.createTable('booster_lease', (t) => {
    t.string('name', 32).primary('booster_lease_pk');
    t.string('holder', 64).nullable();
    t.string('holder_url', 255).nullable();
    t.bigInteger('epoch').notNullable().defaultTo(0);
    h.timestamp(t, 'acquired_at').nullable();
    h.timestamp(t, 'renewed_at').nullable();
    h.timestamp(t, 'expires_at').notNullable();
  });
  await knex('booster_lease').insert({ name: 'leader', holder: null, holder_url: null, epoch: 0, expires_at: new Date(0) });
  await knex.schema.createTable('booster_nodes', (t) => {
    t.string('id', 64).primary('booster_nodes_pk');
    t.string('url', 255).notNullable();
    t.string('role', 16).notNullable();
    t.bigInteger('epoch').notNullable().defaultTo(0);
    t.integer('pid').nullable();
    t.string('version', 64).nullable();
    h.timestamp(t, 'started_at').notNullable();
    h.timestamp(t, 'last_seen_at').notNullable();
  });
  await knex.schema.createTable('booster_events', (t) => {
    t.bigIncrements('id').primary('booster_events_pk');
    t.string('booster_id', 64).notNullable();
    t.bigInteger('epoch').notNullable().defaultTo(0);
    t.string('kind', 32).notNullable();
    t.string('subject', 128).nullable();
    h.json(t, 'details').nullable();
    h.timestamp(t, 'created_at').notNullable();
    t.index(['created_at'], 'booster_events_created_ix');
  });
  // Named leases with a fencing token (the rollout lock, maintenance jobs).
  await knex.schema.createTable('cluster_locks', (t) => {
    t.string('name', 64).primary('cluster_locks_pk');
    t.string('holder', 64).nullable();
    t.bigInteger('token').notNullable().defaultTo(0);
    h.timestamp(t, 'acquired_at').nullable();
    h.timestamp(t, 'expires_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('cluster_locks');
  await knex.schema.dropTable('booster_events');
  await knex.schema.dropTable('booster_nodes');
  await knex.schema.dropTable('booster_lease');
  await knex.schema.dropTable('servers');
}
