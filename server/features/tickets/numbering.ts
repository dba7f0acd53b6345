import type { Knex } from 'knex';
import { getHelpers } from '../../../common/db/helpers/index.js';

/**
 * Ticket numbers come from one database sequence per prefix (an AUTO_INCREMENT table on MySQL),
 * not from a counter row: a counter row stays locked until the ticket's transaction commits, so
 * every creation in the cluster queued behind the previous one's remaining round trips. A
 * sequence value is taken without waiting for anyone, is unique across servers and increases in
 * the order numbers are taken; a rolled-back creation leaves a gap (as OMFLOW's own numbering does).
 */

/**
 * Makes sure `prefix` has its sequence (DDL: called on flow deploy, outside any transaction).
 * `ticket_sequences` stays the registry of prefixes; its next_value seeds a new sequence.
 */
export async function ensureTicketSequence(knex: Knex, prefix: string): Promise<void> {
  const h = getHelpers(knex);
  let row = await knex('ticket_sequences').where({ prefix }).first('next_value');
  if (!row) {
    try {
      await knex('ticket_sequences').insert({ prefix, next_value: 1 });
    } catch {
      // Inserted by another server at the same moment.
    }
    row = { next_value: 1 };
  }
  try {
    await h.createSequence(knex, h.ticketSequenceName(prefix), Number(row.next_value));
  } catch (err) {
    // Two servers deploying the same new prefix at once: the loser's CREATE fails; the sequence exists.
    await h.nextSequenceValue(knex, h.ticketSequenceName(prefix)).then(
      () => undefined,
      () => Promise.reject(err),
    );
  }
}

/** The next number of `prefix`, taken inside the ticket's transaction without any row lock. */
export async function nextTicketNumber(trx: Knex.Transaction, prefix: string): Promise<string> {
  const h = getHelpers(trx);
  return formatTicketNumber(prefix, await h.nextSequenceValue(trx, h.ticketSequenceName(prefix)));
}

/**
 * The ticket number as an expression the ticket's INSERT evaluates (PostgreSQL: the number costs
 * no round trip of its own; read it back with RETURNING); null where the vendor cannot, and the
 * caller takes it first (nextTicketNumber). Not async on purpose: a knex Raw is thenable, and an
 * async function returning one would run it.
 */
export function ticketNumberInInsert(trx: Knex, prefix: string): Knex.Raw | null {
  const h = getHelpers(trx);
  return h.formattedSequenceValueInInsert(prefix, h.ticketSequenceName(prefix));
}

function formatTicketNumber(prefix: string, n: number): string {
  return `${prefix}-${String(n).padStart(6, '0')}`;
}
