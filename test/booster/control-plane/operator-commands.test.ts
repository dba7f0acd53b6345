import { beforeEach, describe, expect, it } from 'vitest';
import { createBooster } from '../../../booster/booster.js';
import { BOOSTER_PATH, HEADER } from '../../../common/protocol/headers.js';
import { waitFor } from '../../helpers/poll.js';
import { runOmflow } from '../../helpers/processes.js';
import { boosterConfig, boosterSuiteDatabase, idleHeartbeat, SECRET, signedPost, silentLog, startFixtureServer } from '../fixtures.js';

/**
 * The operator commands on a real booster, database and loopback servers: a token with the write
 * scope runs drain, undrain, weight and retire (a read-only token is refused and changes
 * nothing), each is one event naming who ran it, duplicate node ids are refused at heartbeat
 * time and listed, and `omflow server …` does the same from the command line.
 */
const READ_TOKEN = 'read-only-operator-token-0123456789';
const ALICE = 'alice-write-token-abcdefghijklmnopqrstuvwxyz';
const suite = boosterSuiteDatabase();
beforeEach(async () => {
  await suite.db.knex('booster_events').del();
});

async function startBooster(id: string, extra: Record<string, string | number> = {}) {
  const b = createBooster({
    config: boosterConfig(id, {
      OMFLOW_BOOSTER_OPERATOR_TOKEN: READ_TOKEN,
      OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS: `alice:${ALICE},ci-bot:ci-bot-token-0123456789abcdefgh`,
      ...extra,
    }),
    db: suite.db.db,
    log: silentLog,
  });
  const base = await b.listen();
  suite.cleanups.push(() => b.close());
  await waitFor(() => b.role() === 'active' || b.role() === 'standby', { what: 'leadership settled' });
  return Object.assign(b, { base });
}

async function fixture(id: string, boosters: string[], heartbeatMs = 100) {
  const f = await startFixtureServer({ id, boosters, heartbeatMs });
  suite.cleanups.push(() => f.stop());
  return f;
}

/** A command, sent again after Retry-After while the active rides through a lease renewal a loaded host made late (503 BOOSTER_ERR_LEASE_NOT_HELD). */
async function post(base: string, path: string, body: unknown, token?: string): Promise<Response> {
  for (let i = 0; ; i++) {
    const r = await fetch(base + path, {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
    if (r.status !== 503 || i === 20) return r;
    await r.arrayBuffer();
    await new Promise((res) => setTimeout(res, 1000));
  }
}

async function codeOf(r: Response): Promise<string> {
  return ((await r.json()) as { code: string }).code;
}

async function status(base: string): Promise<{
  servers: { id: string; state: string; weight: number; draining: boolean }[];
  duplicateNodeIds: { id: string; url: string; registeredUrl: string }[];
}> {
  const r = await fetch(base + BOOSTER_PATH.status, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
  return (await r.json()) as never;
}

async function events(kind: string) {
  return (await suite.db.knex('booster_events').where('kind', kind).orderBy('id')).map((e) => ({
    subject: e.subject,
    boosterId: e.booster_id,
    details: typeof e.details === 'string' ? JSON.parse(e.details) : e.details,
  }));
}

/** Who answered each of `n` sequential GETs. */
async function answeredBy(base: string, n: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${base}/x`);
    await r.arrayBuffer();
    const who = r.headers.get(HEADER.upstream) ?? `status ${r.status}`;
    out[who] = (out[who] ?? 0) + 1;
  }
  return out;
}

describe('operator commands', () => {
  it('a read-only token is refused with its code and changes nothing; a write token drains, undrains and sets the weight, each logged with its name', async () => {
    const b = await startBooster('ops-a');
    const [one, two] = [await fixture('srv-1', [b.base]), await fixture('srv-2', [b.base])];
    await waitFor(async () => (await status(b.base)).servers.filter((s) => s.state === 'up').length === 2, { what: 'both servers up' });

    const refused = await post(b.base, BOOSTER_PATH.drain('srv-1'), { reason: 'try' }, READ_TOKEN);
    expect(refused.status).toBe(403);
    expect(await codeOf(refused)).toBe('COMMON_ERR_OPERATOR_SCOPE');
    const anonymous = await post(b.base, BOOSTER_PATH.weight('srv-1'), { weight: 5 });
    expect(anonymous.status).toBe(401);
    expect(await codeOf(anonymous)).toBe('COMMON_ERR_OPERATOR_AUTH');
    const wrong = await post(b.base, BOOSTER_PATH.retire('srv-1'), {}, 'not-a-token-of-this-booster-at-all');
    expect(wrong.status).toBe(401);
    expect((await suite.db.knex('servers').where('id', 'srv-1').first()).draining).toBeFalsy();
    expect(await events('drain')).toEqual([]);

    const drained = await post(b.base, BOOSTER_PATH.drain('srv-1'), { reason: 'kernel update' }, ALICE);
    expect(drained.status).toBe(200);
    expect(await drained.json()).toEqual({ id: 'srv-1', draining: true });
    // Answered once the table routes on it: nothing new reaches srv-1.
    expect(await answeredBy(b.base, 20)).toEqual({ 'srv-2': 20 });
    expect((await status(b.base)).servers.find((s) => s.id === 'srv-1')).toMatchObject({ state: 'draining', draining: true });

    expect((await post(b.base, BOOSTER_PATH.undrain('srv-1'), {}, ALICE)).status).toBe(200);
    await waitFor(async () => (await status(b.base)).servers.find((s) => s.id === 'srv-1')?.state === 'up', { what: 'srv-1 up again' });

    // Weight: 1 against 1000 sends (nearly) everything to the heavy one; status and the row show it.
    expect((await post(b.base, BOOSTER_PATH.weight('srv-1'), { weight: 1 }, ALICE)).status).toBe(200);
    expect((await post(b.base, BOOSTER_PATH.weight('srv-2'), { weight: 1000 }, 'ci-bot-token-0123456789abcdefgh')).status).toBe(200);
    const spread = await answeredBy(b.base, 40);
    expect(spread['srv-2']).toBeGreaterThanOrEqual(38);
    expect((await status(b.base)).servers.map((s) => [s.id, s.weight])).toEqual([
      ['srv-1', 1],
      ['srv-2', 1000],
    ]);
    expect(Number((await suite.db.knex('servers').where('id', 'srv-2').first()).weight)).toBe(1000);

    // Bad input: a clear code, nothing changed.
    for (const weight of [0, 1001, 2.5, 'x']) {
      const r = await post(b.base, BOOSTER_PATH.weight('srv-1'), { weight }, ALICE);
      expect(r.status).toBe(400);
      expect(await codeOf(r)).toBe('COMMON_ERR_BAD_REQUEST');
    }
    const unknown = await post(b.base, BOOSTER_PATH.drain('nope'), {}, ALICE);
    expect(unknown.status).toBe(404);
    expect(await codeOf(unknown)).toBe('BOOSTER_ERR_UNKNOWN_SERVER');

    // A signed caller (the admin page) acts for its user: both names go in the log.
    expect((await signedPost(b.base, BOOSTER_PATH.drain('srv-2'), { reason: 'from the page', by: 'admin:hana' })).status).toBe(200);

    expect(await events('drain')).toEqual([
      { subject: 'srv-1', boosterId: 'ops-a', details: { by: 'operator:alice', reason: 'kernel update' } },
      { subject: 'srv-2', boosterId: 'ops-a', details: { by: 'admin:hana via test', reason: 'from the page' } },
    ]);
    expect(await events('undrain')).toEqual([{ subject: 'srv-1', boosterId: 'ops-a', details: { by: 'operator:alice', reason: null } }]);
    expect((await events('weight')).map((e) => [e.subject, e.details])).toEqual([
      ['srv-1', { by: 'operator:alice', weight: 1 }],
      ['srv-2', { by: 'operator:ci-bot', weight: 1000 }],
    ]);
    // A write token reads too.
    expect((await fetch(b.base + BOOSTER_PATH.events, { headers: { authorization: `Bearer ${ALICE}` } })).status).toBe(200);
    void one;
    void two;
  });

  it('retire refuses a live server, forgets a gone one on both boosters for good, and a server that comes back registers anew', async () => {
    const a = await startBooster('ops-a', { OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: 400 });
    const b = await startBooster('ops-b', { OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: 400 });
    const gone = await fixture('srv-old', [a.base, b.base]);
    await fixture('srv-new', [a.base, b.base]);
    await waitFor(async () => (await status(a.base)).servers.length === 2 && (await status(b.base)).servers.length === 2, {
      what: 'both boosters list both servers',
    });

    const live = await post(a.base, BOOSTER_PATH.retire('srv-old'), {}, ALICE);
    expect(live.status).toBe(409);
    expect(await codeOf(live)).toBe('BOOSTER_ERR_SERVER_LIVE');
    expect(await suite.db.knex('servers').where('id', 'srv-old').first()).toBeTruthy();

    // The host is switched off; its last heartbeat is long past (as a day later).
    gone.stopHeartbeats();
    await waitFor(async () => (await status(a.base)).servers.find((s) => s.id === 'srv-old')?.state === 'down', { what: 'srv-old down' });
    await suite.db
      .knex('servers')
      .where('id', 'srv-old')
      .update({ last_heartbeat_at: new Date(Date.now() - 3_600_000) });

    const retired = await post(a.base, BOOSTER_PATH.retire('srv-old'), {}, ALICE);
    expect(retired.status).toBe(200);
    expect(await retired.json()).toEqual({ id: 'srv-old', retired: true });
    expect(await suite.db.knex('servers').where('id', 'srv-old').first()).toBeUndefined();
    expect((await status(a.base)).servers.map((s) => s.id)).toEqual(['srv-new']);
    // The other booster drops it at its next refresh of the rows.
    await waitFor(async () => (await status(b.base)).servers.map((s) => s.id).join() === 'srv-new', { what: 'the other booster forgot srv-old' });
    expect(await events('retire')).toEqual([{ subject: 'srv-old', boosterId: 'ops-a', details: { by: 'operator:alice' } }]);
    // Retiring it again: it is unknown.
    expect((await post(a.base, BOOSTER_PATH.retire('srv-old'), {}, ALICE)).status).toBe(404);

    gone.startHeartbeats();
    await waitFor(async () => (await status(a.base)).servers.find((s) => s.id === 'srv-old')?.state === 'up', { what: 'srv-old registered anew' });
    // Its row is written again by the booster's next sync of the table to the database.
    await waitFor(async () => await suite.db.knex('servers').where('id', 'srv-old').first(), { what: 'the servers row of srv-old written again' });
  });

  it('a second live server with the same node id is refused at heartbeat time with its code, listed in status and logged; the first keeps its place', async () => {
    const b = await startBooster('ops-a', { OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: 600 });
    const first = await fixture('srv-1', [b.base]);
    await waitFor(async () => (await status(b.base)).servers.find((s) => s.id === 'srv-1')?.state === 'up', { what: 'srv-1 up' });

    const impostorUrl = 'http://127.0.0.2:9';
    const beat = () => signedPost(b.base, BOOSTER_PATH.heartbeat, idleHeartbeat({ nodeId: 'srv-1', url: impostorUrl, startedAt: 'other-host', seq: 1 }));
    const r = await beat();
    expect(r.status).toBe(409);
    const body = (await r.json()) as { code: string; details: unknown };
    expect(body.code).toBe('BOOSTER_ERR_DUPLICATE_NODE_ID');
    expect(body.details).toEqual({ nodeId: 'srv-1', url: impostorUrl, registeredUrl: first.url });
    expect((await beat()).status).toBe(409);

    const st = await status(b.base);
    expect(st.duplicateNodeIds).toEqual([expect.objectContaining({ id: 'srv-1', url: impostorUrl, registeredUrl: first.url })]);
    expect((await suite.db.knex('servers').where('id', 'srv-1').first()).url).toBe(first.url);
    expect(await answeredBy(b.base, 5)).toEqual({ 'srv-1': 5 });
    // Once per pair of URLs in the log.
    await waitFor(async () => (await events('duplicate-node-id')).length === 1, { what: 'the duplicate logged' });
    expect((await events('duplicate-node-id'))[0]).toMatchObject({ subject: 'srv-1', details: { url: impostorUrl, registeredUrl: first.url } });

    // The first host goes away: the id is free, the other host's heartbeat is taken (a host replaced).
    first.stopHeartbeats();
    await waitFor(async () => (await beat()).status === 200, { what: 'the id taken over once the first stopped', timeoutMs: 5000, intervalMs: 100 });
    expect((await status(b.base)).servers.find((s) => s.id === 'srv-1')).toMatchObject({ state: expect.any(String) });
  });

  it('`omflow server drain|undrain|weight|retire` run with a write token, are refused with a read token, and print what happened', async () => {
    const b = await startBooster('ops-a');
    await fixture('srv-1', [b.base]);
    await waitFor(async () => (await status(b.base)).servers.length === 1, { what: 'srv-1 registered' });
    const env = (token: string) => ({ OMFLOW_OPERATOR_TOKEN: token, OMFLOW_OPERATOR_BOOSTER_URL: b.base });

    const ro = await runOmflow(['server', 'drain', 'srv-1'], env(READ_TOKEN));
    expect(ro.code).toBe(1);
    expect(ro.stderr).toContain('COMMON_ERR_OPERATOR_SCOPE');

    const drain = await runOmflow(['server', 'drain', 'srv-1', '--reason', 'disk swap'], env(ALICE));
    expect(drain.stderr).toBe('');
    expect(drain.code).toBe(0);
    expect(drain.stdout).toContain('srv-1 is draining');
    const weight = await runOmflow(['server', 'weight', 'srv-1', '250', '--json'], env(ALICE));
    expect(JSON.parse(weight.stdout)).toEqual({ id: 'srv-1', weight: 250 });
    const bad = await runOmflow(['server', 'weight', 'srv-1', '0'], env(ALICE));
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('COMMON_ERR_BAD_REQUEST');
    const live = await runOmflow(['server', 'retire', 'srv-1'], env(ALICE));
    expect(live.code).toBe(1);
    expect(live.stderr).toContain('BOOSTER_ERR_SERVER_LIVE');
    const usage = await runOmflow(['server', 'weight', 'srv-1'], env(ALICE));
    expect(usage.code).toBe(2);
    // With the cluster secret and no token, the command is signed and names the user and host.
    const signed = await runOmflow(['server', 'undrain', 'srv-1'], {
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_NODE_ID: 'ops-host',
      OMFLOW_OPERATOR_BOOSTER_URL: b.base,
    });
    expect(signed.code).toBe(0);
    expect((await events('drain')).map((e) => e.details)).toEqual([{ by: 'operator:alice', reason: 'disk swap' }]);
    expect((await events('undrain'))[0].details.by).toMatch(/^cli:.+@.+ via ops-host$/);
  });
});
