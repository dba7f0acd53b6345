import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../booster/booster.js';
import { STEP_STATE } from '../../common/protocol/steps.js';
import { seed } from '../../server/seed.js';
import { boosterConfig, silentLog } from '../booster/fixtures.js';
import { createTestDatabase, type TestDatabase } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { type ServerProcess, startServerProcess } from './helpers.js';

/**
 * A booster dispatches to a server at most the step room its last heartbeat showed. When the only
 * news of a finished step was the next regular heartbeat, a server ran at most its capacity of
 * steps per heartbeat interval, however short the steps (the production lab's queue fell behind
 * ticket load at 48 steps/s). A finished step now reaches the boosters in an early heartbeat:
 * with room for one step and a 20 s heartbeat interval, six queued steps all run long before the
 * second regular heartbeat, and each exactly once.
 */
const HEARTBEAT_MS = 20_000;

describe('a finished step frees its room at the booster at once, not at the next heartbeat', () => {
  let t: TestDatabase;
  let booster: Booster;
  let boosterUrl = '';
  let server: ServerProcess | undefined;

  beforeAll(async () => {
    t = await createTestDatabase('postgres', { migrate: true });
    await seed(t.db, { adminUser: 'admin', adminPassword: 'admin-pass-1', demo: false });
    booster = createBooster({
      // The server's silence between regular beats must not take it out of rotation here.
      config: boosterConfig('room-booster', { OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: 3 * HEARTBEAT_MS }),
      db: t.db,
      log: silentLog,
    });
    boosterUrl = await booster.listen();
    await waitFor(() => booster.role() === 'active', { what: 'active' });
    server = await startServerProcess({
      OMFLOW_DB_URL: t.url,
      OMFLOW_NODE_ID: 'room-1',
      OMFLOW_SERVER_HOST: '127.0.0.1',
      BOOSTER_IP: '127.0.0.1',
      BOOSTER_PORT: new URL(boosterUrl).port,
      OMFLOW_SERVER_HEARTBEAT_MS: String(HEARTBEAT_MS),
      OMFLOW_SERVER_STEP_CONCURRENCY: '1',
    });
    await waitFor(() => booster.table.routable.length === 1, { what: 'the server routable', timeoutMs: 30_000 });
  }, 90_000);
  afterAll(async () => {
    await server?.stop();
    await booster?.close();
    await t?.drop();
  });

  it('six steps on a server with room for one all run within one heartbeat interval, each once', async () => {
    const api = async (path: string, body: unknown, token?: string) => {
      const r = await fetch(boosterUrl + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
      return { status: r.status, body: (await r.json()) as { token: string; id: number } };
    };
    const { token } = (await api('/api/auth/login', { username: 'admin', password: 'admin-pass-1' })).body;
    const flow = await api(
      '/api/flows',
      {
        flowKey: 'room',
        name: 'Room',
        ticketPrefix: 'ROOM',
        definition: { start: 'tag', steps: { tag: { type: 'compute', set: { tagged: 'true' }, next: 'done' }, done: { type: 'end' } } },
      },
      token,
    );
    expect(flow.status, JSON.stringify(flow.body)).toBe(201);
    expect((await api('/api/forms', { formKey: 'room', title: 'Room', flowKey: 'room', fields: [] }, token)).status).toBe(201);

    const ids: number[] = [];
    for (let i = 0; i < 6; i++) {
      const created = await api('/api/forms/room/tickets', { data: {} }, token);
      expect(created.status).toBe(201);
      ids.push(created.body.id);
    }
    const steps = () => t.knex('steps').whereIn('ticket_id', ids).select('state', 'attempt');
    // Well inside the 20 s interval: with only regular heartbeats one step would have run by then.
    await waitFor(async () => (await steps()).every((s) => s.state === STEP_STATE.done), {
      what: 'every step done before the second regular heartbeat',
      timeoutMs: HEARTBEAT_MS / 2,
      intervalMs: 100,
    }).catch(async (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(await steps())}`);
    });
    const rows = await steps();
    expect(rows).toHaveLength(6);
    expect(rows.every((s) => Number(s.attempt) === 1)).toBe(true);
  }, 60_000);
});
