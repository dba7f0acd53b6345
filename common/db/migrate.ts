import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Knex } from 'knex';

/** migrations/ beside common/ both in the source tree and in the compiled package. */
export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'migrations');

const MIGRATIONS_TABLE = 'knex_migrations';

interface MigrationModule {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

/**
 * Names are recorded without extension so a database migrated from the TypeScript sources
 * (dev) and from the compiled package (production) agree.
 */
class OmflowMigrationSource implements Knex.MigrationSource<string> {
  constructor(private readonly dir: string) {}

  async getMigrations(): Promise<string[]> {
    const names = new Set<string>();
    for (const file of readdirSync(this.dir)) {
      const m = /^(\d{8}-\d{4}-[a-z0-9-]+)\.(ts|js)$/.exec(file);
      if (m && !file.endsWith('.d.ts')) names.add(m[1]);
    }
    return [...names].sort();
  }

  getMigrationName(name: string): string {
    return name;
  }

  async getMigration(name: string): Promise<Knex.Migration> {
    const candidates = readdirSync(this.dir).filter((f) => f === `${name}.js` || f === `${name}.ts`);
    const file = candidates.find((f) => f.endsWith('.js')) ?? candidates[0];
    const mod = (await import(pathToFileURL(join(this.dir, file)).href)) as MigrationModule;
    return { up: mod.up, down: mod.down };
  }
}

function migratorConfig(dir = MIGRATIONS_DIR): Knex.MigratorConfig {
  return { migrationSource: new OmflowMigrationSource(dir), tableName: MIGRATIONS_TABLE };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Another process holds knex's lock, or created the bookkeeping tables at the same moment.
function isConcurrentMigration(err: unknown): boolean {
  const e = err as { name?: string; message?: string; cause?: { message?: string } };
  const text = `${e?.name} ${e?.message} ${e?.cause?.message ?? ''}`;
  if (/MigrationLocked|already locked/i.test(text)) return true;
  // Only the bookkeeping tables may race at creation; any other "exists" is a real failure.
  return /knex_migrations/i.test(text) && /already exists|Duplicate entry|duplicate key|There is already an object|ORA-00955|COMMON_ERR_DB_UNIQUE/i.test(text);
}

/**
 * Brings the schema up to date. Safe to run from several processes at once: the loser of
 * knex's lock waits (bounded) and then finds nothing left to do.
 */
export async function migrateLatest(knex: Knex, opts: { timeoutMs?: number; dir?: string } = {}): Promise<string[]> {
  const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
  for (;;) {
    try {
      const [, applied] = (await knex.migrate.latest(migratorConfig(opts.dir))) as [number, string[]];
      return applied;
    } catch (err) {
      if (!isConcurrentMigration(err) || Date.now() > deadline) throw err;
      await sleep(150 + Math.random() * 250);
    }
  }
}

export async function migrateRollback(knex: Knex, all = false): Promise<string[]> {
  const [, undone] = (await knex.migrate.rollback(migratorConfig(), all)) as [number, string[]];
  return undone;
}

export interface MigrationStatus {
  completed: string[];
  pending: string[];
}

export async function migrationStatus(knex: Knex): Promise<MigrationStatus> {
  const [completed, pending] = (await knex.migrate.list(migratorConfig())) as [Array<{ name: string } | string>, Array<{ file: string } | string>];
  return {
    completed: completed.map((c) => (typeof c === 'string' ? c : c.name)),
    pending: pending.map((p) => (typeof p === 'string' ? p : p.file)),
  };
}
