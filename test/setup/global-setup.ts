import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbeddedDb } from '../../install/dev-cluster/embedded-db.js';
import { freePort } from '../helpers/processes.js';
import { selectedVendors } from '../helpers/vendors.js';

/**
 * Starts one embedded PostgreSQL for the whole run (the machine's own PostgreSQL is not
 * assumed); each test file creates its own database in it. The same starter as `npm start`,
 * so a checkout in a private directory (root's home) works for both.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const vendors = selectedVendors(process.env);
  const dir = mkdtempSync(join(tmpdir(), 'omflow-test-pg-'));
  const db = await startEmbeddedDb({
    dir,
    port: await freePort(),
    fresh: false,
    logFile: join(dir, 'postgres.log'),
    onProgress: () => {},
    database: null,
    maxConnections: 400,
    // A unix socket in /tmp as well: network-namespace tests (the VIP) reach the database through it.
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', unix_socket_directories: '/tmp' },
  }).catch((err: Error) => {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  });
  project.provide('pgAdminUrl', db.adminUrl);
  project.provide('mysqlAdminUrl', process.env.OMFLOW_TEST_MYSQL_URL ?? null);
  project.provide('vendors', vendors);
  return async () => {
    await db.stop();
    rmSync(db.dataDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };
}
