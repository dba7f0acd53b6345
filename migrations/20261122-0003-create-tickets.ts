import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  // One row per prefix, incremented inside the ticket's transaction: numbers are unique
  // across servers, and a number is never given to two committed tickets.
  await knex.schema.createTable('ticket_sequences', (t) => {
    t.string('prefix', 16).primary('ticket_sequences_pk');
    t.bigInteger('next_value').notNullable().defaultTo(1);
  });
  await knex.schema.createTable('tickets', (t) => {
    t.bigIncrements('id').primary('tickets_pk');
    t.string('ticket_no', 32).notNullable().unique({ indexName: 'tickets_no_uq' });
    h.foreignId(t, 'form_id').notNullable().references('id').inTable('forms').withKeyName('tickets_form_fk');
    h.foreignId(t, 'flow_version_id').nullable().references('id').inTable('flow_versions').withKeyName('tickets_flow_version_fk');
    t.string('title', 255).notNullable();
    t.string('state', 16).notNullable();
    t.string('current_step', 64).nullable();
    t.bigInteger('assignee_user_id').nullable();
    t.bigInteger('assignee_group_id').nullable();
    h.json(t, 'data').notNullable();
    t.bigInteger('created_by').nullable();
    t.integer('row_version').notNullable().defaultTo(1);
    h.timestamp(t, 'due_at').nullable();
    h.timestamp(t, 'closed_at').nullable();
    h.timestamp(t, 'created_at').notNullable();
    h.timestamp(t, 'updated_at').notNullable();
    t.index(['state', 'created_at'], 'tickets_state_ix');
    t.index(['assignee_user_id', 'state'], 'tickets_assignee_ix');
    t.index(['assignee_group_id', 'state'], 'tickets_group_ix');
    t.index(['created_by'], 'tickets_created_by_ix');
  });
  await knex.schema.createTable('ticket_history', (t) => {
    t.bigIncrements('id').primary('ticket_history_pk');
    h.foreignId(t, 'ticket_id').notNullable().references('id').inTable('tickets').onDelete('CASCADE').withKeyName('ticket_history_ticket_fk');
    t.string('step', 64).nullable();
    t.string('action', 32).notNullable();
    t.bigInteger('actor_user_id').nullable();
    t.string('node_id', 64).nullable();
    h.json(t, 'input').nullable();
    h.json(t, 'output').nullable();
    h.timestamp(t, 'created_at').notNullable();
    t.index(['ticket_id', 'id'], 'ticket_history_ticket_ix');
  });
  await knex.schema.createTable('ticket_comments', (t) => {
    t.bigIncrements('id').primary('ticket_comments_pk');
    h.foreignId(t, 'ticket_id').notNullable().references('id').inTable('tickets').onDelete('CASCADE').withKeyName('ticket_comments_ticket_fk');
    t.bigInteger('user_id').nullable();
    h.longText(t, 'body').notNullable();
    h.timestamp(t, 'created_at').notNullable();
    t.index(['ticket_id'], 'ticket_comments_ticket_ix');
  });
  // Written in the same transaction as the keyed write; a replay returns the stored response.
  await knex.schema.createTable('idempotency_keys', (t) => {
    t.bigIncrements('id').primary('idempotency_keys_pk');
    t.string('principal', 128).notNullable();
    t.string('idem_key', 255).notNullable();
    t.string('method', 8).notNullable();
    t.string('path', 512).notNullable();
    t.string('request_hash', 64).notNullable();
    t.integer('status_code').nullable();
    h.json(t, 'response_body').nullable();
    h.timestamp(t, 'created_at').notNullable();
    h.timestamp(t, 'expires_at').notNullable();
    t.unique(['principal', 'idem_key'], { indexName: 'idempotency_keys_uq' });
    t.index(['expires_at'], 'idempotency_keys_exp_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('idempotency_keys');
  await knex.schema.dropTable('ticket_comments');
  await knex.schema.dropTable('ticket_history');
  await knex.schema.dropTable('tickets');
  await knex.schema.dropTable('ticket_sequences');
}
