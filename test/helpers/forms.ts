import type { Database } from '../../common/db/create-database.js';
import { createFlowsService } from '../../server/features/flows/service.js';
import { createFlowsStore } from '../../server/features/flows/store.js';
import { createFormsService } from '../../server/features/forms/service.js';
import { createFormsStore } from '../../server/features/forms/store.js';
import { ensureTicketSequence } from '../../server/features/tickets/numbering.js';
import { DEMO_FIELDS } from '../../server/seed.js';

/**
 * Deploys a flow that starts at a human step assigned to `assignee` (then ends) and publishes a
 * form `key` on it with the demo fields: ticket creation alone, no automatic step.
 */
export async function deployHumanFirstForm(db: Database, o: { key: string; title: string; ticketPrefix: string; assignee: string }): Promise<void> {
  const flowsStore = createFlowsStore(db.knex);
  await db.transaction((trx) =>
    createFlowsService({ store: flowsStore, ensureTicketPrefix: (prefix) => ensureTicketSequence(db.knex, prefix) }).deploy(
      trx,
      {
        flowKey: o.key,
        name: o.title,
        ticketPrefix: o.ticketPrefix,
        definition: { start: 'review', steps: { review: { type: 'form', assignee: { user: o.assignee }, next: 'done' }, done: { type: 'end' } } },
      },
      null,
    ),
  );
  await db.transaction((trx) =>
    createFormsService({ store: createFormsStore(db.knex), flows: flowsStore }).save(trx, {
      formKey: o.key,
      title: o.title,
      flowKey: o.key,
      fields: DEMO_FIELDS,
    }),
  );
}
