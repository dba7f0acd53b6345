import type { Knex } from 'knex';
import { getHelpers } from '../common/db/helpers/index.js';

// Expand: ticket numbers move from the locked counter row ticket_sequences.next_value to one
// database sequence per prefix (see server/features/tickets/numbering.ts). The table stays as the
// registry of prefixes and seeds each sequence; next_value is no longer advanced by new servers.

/**
 * While old and new app servers run side by side (rolling upgrade), old ones still number from
 * next_value. Each existing prefix's sequence therefore starts this far above it, so the two
 * ranges do not meet: numbers jump once, by this much, at the upgrade.
 */
const MIXED_VERSION_MARGIN = 1000;

export async function up(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  for (const r of await knex('ticket_sequences').select('prefix', 'next_value')) {
    await h.createSequence(knex, h.ticketSequenceName(r.prefix), Number(r.next_value) + MIXED_VERSION_MARGIN);
  }
}

// Hands each sequence's next value back to its counter row, so numbering carries on where it was.
export async function down(knex: Knex): Promise<void> {
  const h = getHelpers(knex);
  for (const r of await knex('ticket_sequences').select('prefix')) {
    const name = h.ticketSequenceName(r.prefix);
    await knex('ticket_sequences')
      .where({ prefix: r.prefix })
      .update({ next_value: await h.nextSequenceValue(knex, name) });
    await h.dropSequence(knex, name);
  }
}
