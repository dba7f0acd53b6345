import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

/**
 * Automatic flow steps (condition, compute, http, timer) waiting to run. The protocol over
 * these rows lives in common/protocol/steps.ts: ready → assigned (server, epoch, lease) →
 * done | failed; an expired lease puts a row back in play.
 */
export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  await knex.schema.createTable('steps', (t) => {
    t.bigIncrements('id').primary('steps_pk');
    h.foreignId(t, 'ticket_id').notNullable().references('id').inTable('tickets').onDelete('CASCADE').withKeyName('steps_ticket_fk');
    t.string('step_key', 64).notNullable();
    t.string('step_type', 16).notNullable();
    t.string('state', 16).notNullable();
    t.integer('attempt').notNullable().defaultTo(0);
    t.integer('dispatch_count').notNullable().defaultTo(0);
    t.string('assigned_server', 64).nullable();
    t.bigInteger('epoch').nullable();
    h.timestamp(t, 'ready_at').notNullable();
    h.timestamp(t, 'lease_expires_at').nullable();
    h.timestamp(t, 'assigned_at').nullable();
    h.timestamp(t, 'started_at').nullable();
    h.timestamp(t, 'finished_at').nullable();
    h.json(t, 'result').nullable();
    t.string('last_error', 2000).nullable();
    h.timestamp(t, 'created_at').notNullable();
    h.timestamp(t, 'updated_at').notNullable();
    t.index(['state', 'ready_at'], 'steps_state_ready_ix');
    t.index(['state', 'lease_expires_at'], 'steps_state_lease_ix');
    t.index(['assigned_server', 'state'], 'steps_server_ix');
    t.index(['ticket_id'], 'steps_ticket_ix');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('steps');
}
