import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  await knex.schema.createTable('users', (t) => {
    t.bigIncrements('id').primary('users_pk');
    t.string('username', 128).notNullable().unique({ indexName: 'users_username_uq' });
    t.string('display_name', 255).notNullable();
    t.string('email', 255).nullable();
    t.string('password_hash', 255).notNullable();
    t.string('role', 16).notNullable().defaultTo('user');
    t.string('locale', 8).notNullable().defaultTo('en');
    t.boolean('disabled').notNullable().defaultTo(false);
    t.integer('failed_logins').notNullable().defaultTo(0);
    h.timestamp(t, 'locked_until').nullable();
    h.timestamp(t, 'created_at').notNullable();
    h.timestamp(t, 'updated_at').notNullable();
  });
  await knex.schema.createTable('user_groups', (t) => {
    t.bigIncrements('id').primary('user_groups_pk');
    t.string('name', 128).notNullable().unique({ indexName: 'user_groups_name_uq' });
    t.string('description', 1000).nullable();
    h.timestamp(t, 'created_at').notNullable();
  });
  await knex.schema.createTable('group_members', (t) => {
    h.foreignId(t, 'group_id').notNullable().references('id').inTable('user_groups').onDelete('CASCADE').withKeyName('group_members_group_fk');
    h.foreignId(t, 'user_id').notNullable().references('id').inTable('users').onDelete('CASCADE').withKeyName('group_members_user_fk');
    t.primary(['group_id', 'user_id'], 'group_members_pk');
    t.index(['user_id'], 'group_members_user_ix');
  });
  await knex.schema.createTable('sessions', (t) => {
    // sha256 of the bearer/cookie token: a database dump does not hand out live sessions.
    t.string('token_hash', 64).primary('sessions_pk');
    h.foreignId(t, 'user_id').notNullable().references('id').inTable('users').onDelete('CASCADE').withKeyName('sessions_user_fk');
    t.string('csrf_token', 64).notNullable();
    h.timestamp(t, 'created_at').notNullable();
    h.timestamp(t, 'last_seen_at').notNullable();
    h.timestamp(t, 'expires_at').notNullable();
    t.index(['user_id'], 'sessions_user_ix');
    t.index(['expires_at'], 'sessions_expires_ix');
  });
  await knex.schema.createTable('api_tokens', (t) => {
    t.bigIncrements('id').primary('api_tokens_pk');
    h.foreignId(t, 'user_id').notNullable().references('id').inTable('users').onDelete('CASCADE').withKeyName('api_tokens_user_fk');
    t.string('name', 128).notNullable();
    t.string('token_hash', 64).notNullable().unique({ indexName: 'api_tokens_hash_uq' });
    h.timestamp(t, 'created_at').notNullable();
    h.timestamp(t, 'expires_at').nullable();
    h.timestamp(t, 'last_used_at').nullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('api_tokens');
  await knex.schema.dropTable('sessions');
  await knex.schema.dropTable('group_members');
  await knex.schema.dropTable('user_groups');
  await knex.schema.dropTable('users');
}
