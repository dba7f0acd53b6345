// The database the ticket benches share: migrated, seeded (admin `bench`), and, for
// `--form bench-simple`, a form whose flow has no automatic step (ticket creation alone).
import type { Pool } from 'undici';
import { createDatabase, type Database } from '../common/db/create-database.js';
import { migrateLatest } from '../common/db/migrate.js';
import { seed } from '../server/seed.js';
import { dbConfig } from '../test/helpers/db.js';
import { deployHumanFirstForm } from '../test/helpers/forms.js';

export async function prepareTicketBenchDb(url: string, formKey: string): Promise<Database> {
  const db = createDatabase(dbConfig(url, { poolMax: 2 }));
  await migrateLatest(db.knex);
  await seed(db, { adminUser: 'bench', adminPassword: 'bench-password', demo: true });
  if (formKey === 'bench-simple' && !(await db.knex('forms').where({ form_key: formKey }).first())) {
    await deployHumanFirstForm(db, { key: formKey, title: 'Bench', ticketPrefix: 'BEN', assignee: 'bench' });
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
