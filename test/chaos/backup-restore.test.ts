import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/poll.js';
import { type Ack, type ChaosCluster, startChaosCluster, startTicketLoad, ticketTitle } from './cluster.js';
import { PG_BIN, type PostgresHa, postgresBinariesMissing, startPostgresHa } from './postgres-ha.js';

/**
 * Backup and restore exactly as docs/operator-guide.md ("Backup and restore") says: an online
 * `pg_dump -Fc` while tickets are being raised, the services stopped, the database dropped,
 * `pg_restore --create`, the services started. Every ticket acknowledged before the dump began is
 * back with its number and history, steps that were in flight at the dump finish exactly once,
 * and new tickets get numbers above every restored one (the ticket sequences are restored too).
 */
const run = promisify(execFile);
const missing = postgresBinariesMissing();

interface TicketRow {
  id: number;
  ticket_no: string;
  title: string;
}

const numberOf = (ticketNo: string) => Number(ticketNo.replace(/^\D+-/, ''));

describe.skipIf(missing !== null)(`backup and restore of the cluster's database (pg_dump / pg_restore)${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let pg: PostgresHa;
  let cluster: ChaosCluster | undefined;
  let dir: string;

  beforeAll(async () => {
    pg = await startPostgresHa({ replica: false });
    dir = mkdtempSync(join(tmpdir(), 'omflow-backup-'));
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
    await pg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  it('dump under load, stop, drop, restore, start: every ticket is back, in-flight steps finish once, new numbers are fresh', async () => {
    const url = pg.primaryUrl();
    const maintenance = new URL(url);
    maintenance.pathname = '/postgres';
    const dump = join(dir, 'omflow.dump');
    cluster = await startChaosCluster({ name: 'backup', dbUrl: url, nodes: 1 });
    const c1 = cluster;
    const active = c1.boosters[0]!.url;

    // Online backup: tickets keep being raised while pg_dump takes its snapshot.
    const load = startTicketLoad({ url: active, token: c1.token, label: 'before' });
    let ackedBeforeDump: Ack[] = [];
    try {
      await waitFor(() => load.acks.length >= 30, { what: 'tickets before the dump', timeoutMs: 60_000, intervalMs: 100 });
      ackedBeforeDump = [...load.acks];
      await run(join(PG_BIN, 'pg_dump'), ['--format=custom', `--file=${dump}`, `--dbname=${url}`]);
      await waitFor(() => load.acks.length >= ackedBeforeDump.length + 10, { what: 'tickets after the dump', timeoutMs: 60_000, intervalMs: 100 });
    } finally {
      await load.stop();
    }
    expect(statSync(dump).size).toBeGreaterThan(0);
    const before = (await c1.db.knex('tickets').whereIn(
      'title',
      ackedBeforeDump.map((a) => ticketTitle(a.key)),
    )) as TicketRow[];
    expect(before).toHaveLength(ackedBeforeDump.length);

    // Wipe: services stopped, then the database dropped.
    await c1.stop();
    cluster = undefined;
    await run(join(PG_BIN, 'psql'), [`--dbname=${maintenance}`, '-v', 'ON_ERROR_STOP=1', '-c', 'DROP DATABASE omflow']);
    const gone = await run(join(PG_BIN, 'psql'), [`--dbname=${maintenance}`, '-At', '-c', "SELECT count(*) FROM pg_database WHERE datname = 'omflow'"]);
    expect(gone.stdout.trim()).toBe('0');

    // Restore and start the services again (no migrate, no seed: everything comes from the dump).
    await run(join(PG_BIN, 'pg_restore'), ['--create', '--exit-on-error', `--dbname=${maintenance}`, dump]);
    cluster = await startChaosCluster({ name: 'backup', dbUrl: url, nodes: 1, prepare: false });
    const c2 = cluster;
    const knex = c2.db.knex;

    // Every ticket acknowledged before the dump began: same id, number and title.
    const after = (await knex('tickets').whereIn(
      'id',
      before.map((t) => t.id),
    )) as TicketRow[];
    const afterById = new Map(after.map((t) => [Number(t.id), t]));
    for (const t of before) {
      expect(afterById.get(Number(t.id))?.ticket_no).toBe(t.ticket_no);
      expect(afterById.get(Number(t.id))?.title).toBe(t.title);
    }
    // A user reads one through the restored cluster.
    const sample = before[before.length - 1]!;
    const read = await fetch(`${c2.boosters[0]!.url}/api/tickets/${sample.id}`, { headers: { authorization: `Bearer ${c2.token}` } });
    expect(read.status, `${await read.clone().text()}\n${c2.logs(20_000)}`).toBe(200);
    expect(((await read.json()) as { number: string }).number).toBe(sample.ticket_no);

    // Steps that were pending or running at the dump finish after the restore, exactly once each.
    const restored = (await knex('tickets').where('title', 'like', `${ticketTitle('before-')}%`)) as (TicketRow & { current_step: string })[];
    await waitFor(
      async () =>
        Number(
          (
            await knex('tickets')
              .where('title', 'like', `${ticketTitle('before-')}%`)
              .whereNot('current_step', 'approve')
              .count({ n: '*' })
          )[0]!.n,
        ) === 0,
      { what: 'every restored ticket at its approval step', timeoutMs: 60_000, intervalMs: 100 },
    );
    const overDone = await knex('ticket_history')
      .whereIn(
        'ticket_id',
        restored.map((t) => t.id),
      )
      .whereIn('step', ['triage', 'small'])
      .where('action', 'step.done')
      .groupBy('ticket_id', 'step')
      .havingRaw('count(*) <> 1')
      .select('ticket_id', 'step');
    expect(overDone).toEqual([]);
    const done = await knex('ticket_history')
      .whereIn(
        'ticket_id',
        restored.map((t) => t.id),
      )
      .whereIn('step', ['triage', 'small'])
      .where('action', 'step.done')
      .count({ n: '*' });
    expect(Number(done[0]!.n)).toBe(2 * restored.length);

    // New tickets: numbers above every restored one, no clash (the sequence came back with the data).
    const highest = Math.max(...restored.map((t) => numberOf(t.ticket_no)));
    const more = startTicketLoad({ url: c2.boosters[0]!.url, token: c2.token, label: 'after', clients: 2 });
    try {
      await waitFor(() => more.acks.length >= 10, { what: 'tickets on the restored cluster', timeoutMs: 60_000, intervalMs: 100 });
    } finally {
      await more.stop();
    }
    expect(more.errors).toEqual([]);
    for (const a of more.acks) expect(numberOf(a.number)).toBeGreaterThan(highest);
    console.log(
      `backup/restore: ${before.length} tickets acknowledged before the dump, ${restored.length} in it, all back; new numbers from ${Math.min(...more.acks.map((a) => numberOf(a.number)))} (highest restored ${highest})`,
    );
  }, 240_000);
});
