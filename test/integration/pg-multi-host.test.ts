import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase, type Database } from '../../common/db/create-database.js';
import { CommonErrors } from '../../common/errors.js';
import { type EmbeddedDb, startEmbeddedDb } from '../../install/dev-cluster/embedded-db.js';
import { dbConfig } from '../helpers/db.js';
import { freePort } from '../helpers/processes.js';

/**
 * Two real PostgreSQL servers behind one libpq-style URL
 * `postgres://…@A,B/omflow?target_session_attrs=read-write`. A server is made read-only the
 * way a hot standby looks to a client (`default_transaction_read_only`, set with ALTER SYSTEM
 * and a reload, so sessions already open see it too). The roles are then swapped, as after a
 * failover with the old primary demoted.
 */
const PASSWORD = 'multi-host-test';

async function admin(db: EmbeddedDb, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: db.url.replace(/:[^:@/]*@/, `:${PASSWORD}@`) });
  await c.connect();
  try {
    // The admin session itself must be able to write whatever the server's default is.
    await c.query('SET default_transaction_read_only = off');
    await c.query(sql);
  } finally {
    await c.end();
  }
}

async function setReadOnly(db: EmbeddedDb, on: boolean): Promise<void> {
  await admin(db, `ALTER SYSTEM SET default_transaction_read_only = ${on ? 'on' : 'off'}`);
  await admin(db, 'SELECT pg_reload_conf()');
  // pg_reload_conf() only signals the postmaster. Once a new session sees the value, the postmaster
  // has re-read its files and signalled every backend, so each open session applies it at its next
  // statement (without this wait a pooled session could still take one write).
  const want = on ? 'on' : 'off';
  for (let i = 0; i < 100; i++) {
    const c = new pg.Client({ connectionString: db.url.replace(/:[^:@/]*@/, `:${PASSWORD}@`) });
    await c.connect();
    const seen = await c.query<{ default_transaction_read_only: string }>('SHOW default_transaction_read_only').finally(() => c.end());
    if (seen.rows[0].default_transaction_read_only === want) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`default_transaction_read_only never became ${want}`);
}

/** One write: which server (port) took it. */
async function writeOnce(db: Database, label: string): Promise<number> {
  const r = await db.knex.raw<{ rows: { port: number }[] }>('INSERT INTO marks (label) VALUES (?) RETURNING inet_server_port() AS port', [label]);
  return Number(r.rows[0].port);
}

describe('PostgreSQL multi-host URL with target_session_attrs (two real servers)', () => {
  const dirs: string[] = [];
  let a: EmbeddedDb;
  let b: EmbeddedDb;
  const opened: Database[] = [];

  const open = (url: string) => {
    const db = createDatabase(dbConfig(url, { poolMax: 4, connectTimeoutMs: 2000 }));
    opened.push(db);
    return db;
  };
  const listUrl = (attrs: string, first = a.port, second = b.port) =>
    `postgres://postgres:${PASSWORD}@127.0.0.1:${first},127.0.0.1:${second}/omflow?target_session_attrs=${attrs}`;

  beforeAll(async () => {
    const start = async (name: string) => {
      const dir = mkdtempSync(join(tmpdir(), `omflow-multihost-${name}-`));
      dirs.push(dir);
      return startEmbeddedDb({ dir, port: await freePort(), fresh: true, logFile: join(dir, 'postgres.log'), onProgress: () => {}, maxConnections: 30 });
    };
    [a, b] = await Promise.all([start('a'), start('b')]);
    for (const db of [a, b]) {
      const c = new pg.Client({ connectionString: db.url });
      await c.connect();
      await c.query(`ALTER USER postgres PASSWORD '${PASSWORD}'`);
      await c.query('CREATE TABLE marks (id serial PRIMARY KEY, label text NOT NULL)');
      await c.end();
    }
    // A starts as the read-only one (a standby as clients see it), B as the writable primary.
    await setReadOnly(a, true);
  }, 120_000);

  afterAll(async () => {
    for (const db of opened) await db.destroy().catch(() => {});
    for (const db of [a, b]) await db?.stop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it('read-write: every connection of the pool lands on the writable second host', async () => {
    const db = open(listUrl('read-write'));
    // Four at once: four pooled connections, each opened through the host list.
    const ports = await Promise.all(
      [1, 2, 3, 4].map(() => db.knex.raw<{ rows: { port: number }[] }>('SELECT inet_server_port() AS port, pg_sleep(0.1)').then((r) => Number(r.rows[0].port))),
    );
    expect(ports).toEqual([b.port, b.port, b.port, b.port]);
    expect(await writeOnce(db, 'before-swap')).toBe(b.port);
  });

  it('any: the first host that accepts a connection wins, read-only or not (libpq semantics)', async () => {
    const db = open(listUrl('any'));
    const r = await db.knex.raw<{ rows: { port: number }[] }>('SELECT inet_server_port() AS port');
    expect(Number(r.rows[0].port)).toBe(a.port);
  });

  it('a dead first host is skipped', async () => {
    const dead = await freePort();
    const db = open(listUrl('read-write', dead, b.port));
    expect(await writeOnce(db, 'dead-first')).toBe(b.port);
  });

  it('after the roles swap, pooled connections to the demoted host are discarded and new ones find the new primary', async () => {
    const db = open(listUrl('read-write'));
    // Fill the pool with connections to B (the primary for now).
    await Promise.all([1, 2, 3, 4].map(() => db.knex.raw('SELECT pg_sleep(0.1)')));
    expect(await writeOnce(db, 'warm')).toBe(b.port);

    // Failover: A is promoted, B demoted (its open sessions turn read-only at their next statement).
    await setReadOnly(a, false);
    await setReadOnly(b, true);

    // Each pooled connection to B fails one write with 25006 and is destroyed; a caller sees the
    // stable COMMON_ERR_DB_CONNECTION (503). At most one failure per pooled connection.
    const failures: string[] = [];
    const landed: number[] = [];
    for (let i = 0; i < 12; i++) {
      try {
        landed.push(await writeOnce(db, `after-swap-${i}`));
      } catch (err) {
        expect(CommonErrors.COMMON_ERR_DB_CONNECTION.is(err)).toBe(true);
        expect((err as { details?: { vendorCode?: string } }).details?.vendorCode).toBe('25006');
        failures.push(String(i));
      }
    }
    expect(failures.length).toBeGreaterThanOrEqual(1);
    expect(failures.length).toBeLessThanOrEqual(4);
    expect(landed.length).toBeGreaterThanOrEqual(8);
    expect(new Set(landed)).toEqual(new Set([a.port]));

    // Reads too: every connection the pool now holds is on A.
    const ports = await Promise.all(
      [1, 2, 3, 4].map(() => db.knex.raw<{ rows: { port: number }[] }>('SELECT inet_server_port() AS port, pg_sleep(0.1)').then((r) => Number(r.rows[0].port))),
    );
    expect(ports).toEqual([a.port, a.port, a.port, a.port]);

    // And nothing was written on the demoted server after the swap.
    const c = new pg.Client({ connectionString: b.url.replace(/:[^:@/]*@/, `:${PASSWORD}@`) });
    await c.connect();
    const onB = await c.query("SELECT count(*)::int AS n FROM marks WHERE label LIKE 'after-swap-%'");
    await c.end();
    expect(onB.rows[0].n).toBe(0);
  });

  it('no host fits: the pool reports COMMON_ERR_DB_CONNECTION naming each host and why', async () => {
    await setReadOnly(a, true);
    try {
      const db = open(listUrl('read-write'));
      const err = await writeOnce(db, 'nowhere').catch((e: unknown) => e);
      expect(CommonErrors.COMMON_ERR_DB_CONNECTION.is(err)).toBe(true);
      const cause = (err as { cause?: Error }).cause;
      expect(String(cause?.message)).toMatch(new RegExp(`127\\.0\\.0\\.1:${a.port} \\(read-only`));
      expect(String(cause?.message)).toMatch(new RegExp(`127\\.0\\.0\\.1:${b.port} \\(read-only`));
    } finally {
      await setReadOnly(a, false);
    }
  });
});
