import type { Database } from '../common/db/create-database.js';
import type { FlowDefinition } from './features/flows/definition.js';
import { createFlowsService } from './features/flows/service.js';
import { createFlowsStore } from './features/flows/store.js';
import type { FieldDef } from './features/forms/fields.js';
import { createFormsService } from './features/forms/service.js';
import { createFormsStore } from './features/forms/store.js';
import { createSettingsStore } from './features/settings/store.js';
import { ensureTicketSequence } from './features/tickets/numbering.js';
import { createUsersService } from './features/users/service.js';
import { createUsersStore } from './features/users/store.js';

export const DEMO_FLOW: FlowDefinition = {
  start: 'triage',
  steps: {
    triage: { type: 'condition', branches: [{ when: 'amount > 100000', next: 'large' }], default: 'small' },
    large: { type: 'compute', set: { approvalLevel: '"manager"', totalWithTax: '$round(amount * 1.1)' }, next: 'approve' },
    small: { type: 'compute', set: { approvalLevel: '"team"', totalWithTax: '$round(amount * 1.1)' }, next: 'approve' },
    approve: {
      type: 'form',
      title: 'Approve the request',
      assignee: { group: 'it-support' },
      fields: [{ key: 'resolution', label: 'Resolution', labelJa: '対応内容', type: 'textarea' }],
      next: 'done',
      onReject: 'rejected',
      onSendBack: 'rework',
    },
    rework: { type: 'form', title: 'Rework the request', assignee: { creator: true }, next: 'triage' },
    done: { type: 'end', state: 'completed' },
    rejected: { type: 'end', state: 'rejected' },
  },
};

export const DEMO_FIELDS: FieldDef[] = [
  { key: 'title', label: 'Subject', labelJa: '件名', type: 'text', required: true, maxLength: 200 },
  { key: 'category', label: 'Category', labelJa: '分類', type: 'select', required: true, options: ['hardware', 'software', 'access'] },
  { key: 'amount', label: 'Amount (JPY)', labelJa: '金額（円）', type: 'number', required: true, min: 0 },
  { key: 'neededBy', label: 'Needed by', labelJa: '希望日', type: 'date' },
  { key: 'details', label: 'Details', labelJa: '詳細', type: 'textarea' },
];

/** Idempotent: (re)sets the admin account; with `demo`, the it-request form and its REQ flow and group. */
export async function seed(db: Database, opts: { adminUser: string; adminPassword: string; demo: boolean }): Promise<string[]> {
  const done: string[] = [];
  const usersStore = createUsersStore(db.knex);
  const users = createUsersService({ store: usersStore, settings: createSettingsStore(db.knex) });
  const admin = await users.ensureAdmin(opts.adminUser, opts.adminPassword);
  done.push(`admin user ${admin.username}`);
  if (!opts.demo) return done;
  let group = await usersStore.groupByName('it-support');
  if (!group) {
    await usersStore.createGroup('it-support', 'Handles IT requests');
    group = await usersStore.groupByName('it-support');
  }
  await usersStore.addMember(group!.id, admin.id);
  const flowsStore = createFlowsStore(db.knex);
  const existing = await flowsStore.byKey('it-request');
  const latest = existing ? await flowsStore.latestVersion(existing.id) : null;
  if (!latest || JSON.stringify(latest.definition) !== JSON.stringify(DEMO_FLOW)) {
    const r = await db.transaction((trx) =>
      createFlowsService({ store: flowsStore, ensureTicketPrefix: (prefix) => ensureTicketSequence(db.knex, prefix) }).deploy(
        trx,
        { flowKey: 'it-request', name: 'IT request', ticketPrefix: 'REQ', slaHours: 72, definition: DEMO_FLOW },
        admin.id,
      ),
    );
    done.push(`flow it-request v${r.version}`);
  }
  await db.transaction((trx) =>
    createFormsService({ store: createFormsStore(db.knex), flows: flowsStore }).save(trx, {
      formKey: 'it-request',
      title: 'IT request',
      description: 'Ask IT for hardware, software or access.',
      fields: DEMO_FIELDS,
      flowKey: 'it-request',
    }),
  );
  done.push('form it-request (prefix REQ)');
  return done;
}
