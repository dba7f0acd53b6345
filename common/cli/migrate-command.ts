import { databaseArea } from '../config/areas/database.js';
import { loadConfig } from '../config/load.js';
import { createDatabase } from '../db/create-database.js';
import { migrateLatest, migrateRollback, migrationStatus } from '../db/migrate.js';
import { type CliContext, parseFlags } from './context.js';

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags(argv, ['all', 'help']);
  const action = positionals[0];
  if (flags.help || !['latest', 'rollback', 'status'].includes(action ?? '')) {
    ctx.stdout.write('Usage: omflow migrate latest | rollback [--all] | status\n');
    return flags.help ? 0 : 2;
  }
  const config = loadConfig([databaseArea], { env: ctx.env, file: ctx.configFile });
  const db = createDatabase(config.database);
  try {
    if (action === 'latest') {
      const applied = await migrateLatest(db.knex);
      ctx.stdout.write(applied.length ? `applied ${applied.length}: ${applied.join(', ')}\n` : 'already up to date\n');
    } else if (action === 'rollback') {
      const undone = await migrateRollback(db.knex, flags.all === true);
      ctx.stdout.write(undone.length ? `rolled back ${undone.length}: ${undone.join(', ')}\n` : 'nothing to roll back\n');
    } else {
      const status = await migrationStatus(db.knex);
      for (const name of status.completed) ctx.stdout.write(`  applied  ${name}\n`);
      for (const name of status.pending) ctx.stdout.write(`  pending  ${name}\n`);
      ctx.stdout.write(status.pending.length ? `${status.pending.length} pending\n` : 'up to date\n');
      return status.pending.length ? 3 : 0;
    }
    return 0;
  } finally {
    await db.destroy();
  }
}
