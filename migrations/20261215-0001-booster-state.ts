import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

/**
 * Cluster-wide switches both boosters honour, one row each (name = 'maintenance': the
 * maintenance page of `omflow maintenance on`). In the database so a takeover keeps them.
 */
export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  await knex.schema.createTable('booster_state', (t) => {
    t.string('name', 32).primary('booster_state_pk');
    h.json(t, 'value').nullable();
    t.string('updated_by', 128).nullable();
    h.timestamp(t, 'updated_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('booster_state');
}
