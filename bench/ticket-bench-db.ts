// The database the ticket benches share: migrated, seeded (admin `bench`), and, for
// `--form bench-simple`, a form whose flow has no automatic step (ticket creation alone).
import type { Pool } from 'undici';
import { createDatabase, type Database } from '../common/db/create-database.js';
import { migrateLatest } from '../common/db/migrate.js';
import { createFlowsService } from '../server/features/flows/service.js';
import { createFlowsStore } from '../server/features/flows/store.js';
import { createFormsService } from '../server/features/forms/service.js';
import { createFormsStore } from '../server/features/forms/store.js';
import { DEMO_FIELDS, seed } from '../server/seed.js';
import { dbConfig } from '../test/helpers/db.js';

export async function prepareTicketBenchDb(url: string, formKey: string): Promise<Database> {
  const db = createDatabase(dbConfig(url, { poolMax: 2 }));
  await migrateLatest(db.knex);
  await seed(db, { adminUser: 'bench', adminPassword: 'bench-password', demo: true });
  if (formKey === 'bench-simple' && !(await db.knex('forms').where({ form_key: formKey }).first())) {
    const flowsStore = createFlowsStore(db.knex);
    await db.transaction((trx) =>
      createFlowsService({ store: flowsStore }).deploy(
        trx,
        {
          flowKey: 'bench-simple',
          name: 'Bench',
          ticketPrefix: 'BEN',
          definition: { start: 'review', steps: { review: { type: 'form', assignee: { user: 'bench' }, next: 'done' }, done: { type: 'end' } } },
        },
        null,
      ),
    );
    await db.transaction((trx) =>
      createFormsService({ store: createFormsStore(db.knex), flows: flowsStore }).save(trx, {
        formKey,
        title: 'Bench',
        flowKey: 'bench-simple',
        fields: DEMO_FIELDS,
      }),
    );
  }
  return db;
}

/** Logs in as the bench admin through `pool` (retried while the server is not yet routable); the headers of an authenticated JSON request. */
export async function benchAuthHeaders(pool: Pool): Promise<Record<string, string>> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const r = await pool.request({
      path: '/api/auth/login',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: 'bench', password: 'bench-password' }),
    });
    const answer = (await r.body.json()) as { token?: string };
    if (r.statusCode === 200 && answer.token) return { 'content-type': 'application/json', authorization: `Bearer ${answer.token}` };
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error('bench login failed');
}
