import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BoosterClient } from '../../../agent/booster-client.js';
import { buildControlApi } from '../../../agent/control-api.js';
import { createBooster } from '../../../booster/booster.js';
import { audiencesFor, signClusterRequest } from '../../../common/protocol/cluster-auth.js';
import { createClusterClient } from '../../../common/protocol/cluster-client.js';
import { EpochFence } from '../../../common/protocol/epoch.js';
import { AGENT_PATH, BOOSTER_PATH, HEADER } from '../../../common/protocol/headers.js';
import { WIRE_ERROR } from '../../../common/protocol/wire-errors.js';
import { createHeartbeat } from '../../../server/heartbeat.js';
import { Runtime } from '../../../server/runtime.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../../helpers/db.js';
import { boosterConfig, idleHeartbeat, SECRET, silentLog, startFixtureServer, until } from '../fixtures.js';

/**
 * The control plane as an attacker on the users' network sees it: reads need credentials,
 * captured signed calls (heartbeat, drain, agent calls) are refused the second time and on
 * another receiver, and a refused call changes nothing.
 */
const TOKEN = 'operator-token-for-tests-0123456789';
let tdb: TestDatabase;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  tdb = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  await tdb.knex('servers').del();
});
afterAll(async () => {
  await tdb?.drop();
});

async function startBooster(id: string) {
  const b = createBooster({ config: boosterConfig(id, { OMFLOW_BOOSTER_OPERATOR_TOKEN: TOKEN }), db: tdb.db, log: silentLog });
  const base = await b.listen();
  cleanups.push(() => b.close());
  return Object.assign(b, { base });
}

interface Captured {
  origin: string;
  path: string;
  method: string;
  headers: Record<string, string>;
  body: string;
}

/** Records the signed requests this process sends (undici's diagnostics channel): what a sniffer on the wire sees. */
function captureRequests(): { seen: Captured[]; stop(): void } {
  const seen: Captured[] = [];
  const onCreate = (msg: unknown) => {
    const r = (msg as { request: { origin: string; path: string; method: string; headers: string[] | string; body: unknown } }).request;
    const flat = Array.isArray(r.headers) ? r.headers : [];
    const headers: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) headers[String(flat[i]).toLowerCase()] = String(flat[i + 1]);
    const body =
      r.body === null || r.body === undefined ? '' : Buffer.isBuffer(r.body) || r.body instanceof Uint8Array ? Buffer.from(r.body).toString() : String(r.body);
    if (headers[HEADER.clusterSignature]) seen.push({ origin: String(r.origin), path: r.path, method: r.method, headers, body });
  };
  subscribe('undici:request:create', onCreate);
  return { seen, stop: () => unsubscribe('undici:request:create', onCreate) };
}

async function send(base: string, c: Captured, headers = c.headers) {
  const r = await request(base + c.path, { method: c.method as 'POST', headers, body: c.method === 'GET' ? undefined : c.body });
  const text = await r.body.text();
  return { status: r.statusCode, json: () => JSON.parse(text) as { code?: string; details?: { reason?: string } }, text };
}

function serverHeartbeat(boosterUrls: string[], nodeId = 'hb-1') {
  const runtime = new Runtime(nodeId, '1.0.0', 4);
  return createHeartbeat({
    boosterUrls,
    secret: SECRET,
    nodeId,
    url: 'http://127.0.0.1:1',
    runtime,
    fence: new EpochFence(),
    knex: tdb.knex,
    log: silentLog,
    intervalMs: 1000,
  });
}

describe('authenticated control plane', () => {
  it('status, events and metrics need the operator token or a signature; active says only yes or no', async () => {
    const b = await startBooster('auth-read');
    await until(() => b.role() === 'active', 'booster active');
    for (const path of [BOOSTER_PATH.status, BOOSTER_PATH.events, BOOSTER_PATH.metrics]) {
      for (const headers of [{}, { authorization: 'Bearer wrong-token-wrong-token-wrong' }, { authorization: TOKEN }]) {
        const r = await request(b.base + path, { headers });
        const text = await r.body.text();
        expect(r.statusCode, `${path} ${JSON.stringify(headers)}`).toBe(401);
        expect(JSON.parse(text).code).toBe(WIRE_ERROR.operatorAuth);
        expect(text).not.toContain('auth-read');
      }
      const ok = await request(b.base + path, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(ok.statusCode).toBe(200);
      await ok.body.text();
      const signed = await createClusterClient({ secret: SECRET, nodeId: 'test' }).call(b.base, 'GET', path);
      expect(signed.status).toBe(200);
    }
    const forged = await request(b.base + BOOSTER_PATH.status, {
      headers: { [HEADER.clusterSignature]: 'a'.repeat(64), [HEADER.clusterTimestamp]: String(Date.now()), [HEADER.clusterNonce]: 'b'.repeat(32) },
    });
    expect(forged.statusCode).toBe(401);
    expect(((await forged.body.json()) as { code: string }).code).toBe(WIRE_ERROR.clusterAuth);
    const active = await request(b.base + BOOSTER_PATH.active);
    expect(active.statusCode).toBe(200);
    expect(await active.body.json()).toEqual({ active: true });
  });

  it('refuses a replayed heartbeat and a replayed drain with their codes, and nothing changes', async () => {
    const b = await startBooster('auth-replay');
    await until(() => b.role() === 'active', 'booster active');
    const cap = captureRequests();
    try {
      const hb = serverHeartbeat([b.base]);
      await hb.beat();
      const entry = (await until(() => b.table.servers.get('hb-1'), 'server registered'))!;
      const seenAt = entry.heartbeatAt;
      const seq = entry.heartbeat?.seq;
      const beat = cap.seen.find((c) => c.path === BOOSTER_PATH.heartbeat)!;
      expect(beat).toBeDefined();
      const replay = await send(b.base, beat);
      expect(replay.status).toBe(401);
      expect(replay.json().code).toBe(WIRE_ERROR.clusterReplay);
      expect(b.table.servers.get('hb-1')!.heartbeatAt).toBe(seenAt);
      expect(b.table.servers.get('hb-1')!.heartbeat?.seq).toBe(seq);

      const agent = new BoosterClient([b.base], { secret: SECRET, nodeId: 'hb-1' }, silentLog);
      expect((await agent.drain('maintenance'))[0]).toMatchObject({ ok: true, status: 200 });
      expect(b.table.servers.get('hb-1')!.drainingDb).toBe(true);
      expect((await agent.undrain())[0]).toMatchObject({ ok: true });
      expect(b.table.servers.get('hb-1')!.drainingDb).toBe(false);
      const drain = cap.seen.find((c) => c.path === BOOSTER_PATH.drain('hb-1'))!;
      const again = await send(b.base, drain);
      expect(again.status).toBe(401);
      expect(again.json().code).toBe(WIRE_ERROR.clusterReplay);
      expect(b.table.servers.get('hb-1')!.drainingDb).toBe(false);
      expect((await tdb.knex('servers').where({ id: 'hb-1' }).first())?.draining).toBeFalsy();

      // A fresh nonce on the captured headers does not help: the nonce is signed.
      const renonced = await send(b.base, drain, { ...drain.headers, [HEADER.clusterNonce]: 'c'.repeat(32) });
      expect(renonced.json()).toMatchObject({ code: WIRE_ERROR.clusterAuth, details: { reason: 'signature' } });
      expect(b.table.servers.get('hb-1')!.drainingDb).toBe(false);
    } finally {
      cap.stop();
    }
  });

  it('a call signed for one booster is refused by the other; each booster gets its own signature', async () => {
    const a = await startBooster('auth-aud-a');
    await until(() => a.role() === 'active', 'booster a active');
    const s = await startBooster('auth-aud-b');
    const cap = captureRequests();
    try {
      await serverHeartbeat([a.base, s.base], 'hb-2').beat();
      await until(() => a.table.servers.get('hb-2') && s.table.servers.get('hb-2'), 'both boosters heard the heartbeat');
      const beats = cap.seen.filter((c) => c.path === BOOSTER_PATH.heartbeat);
      expect(beats).toHaveLength(2);
      expect(beats[0].headers[HEADER.clusterNonce]).not.toBe(beats[1].headers[HEADER.clusterNonce]);
      const forA = beats.find((c) => a.base.startsWith(c.origin) || c.origin === a.base)!;
      const r = await send(s.base, forA);
      expect(r.status).toBe(401);
      expect(r.json()).toMatchObject({ code: WIRE_ERROR.clusterAuth, details: { reason: 'audience' } });
    } finally {
      cap.stop();
    }
  });

  it('a call signed for no audience is refused by a booster and by an agent, and changes nothing', async () => {
    const b = await startBooster('auth-noaud');
    await until(() => b.role() === 'active', 'booster active');
    // A valid heartbeat, signed with the cluster secret but for no receiver in particular.
    const hb = JSON.stringify(idleHeartbeat({ nodeId: 'hb-3', url: 'http://127.0.0.1:1', version: '1.0.0', startedAt: new Date().toISOString() }));
    const r = await request(b.base + BOOSTER_PATH.heartbeat, {
      method: 'POST',
      body: hb,
      headers: { 'content-type': 'application/json', ...signClusterRequest(SECRET, 'hb-3', 'POST', BOOSTER_PATH.heartbeat, hb) },
    });
    expect(r.statusCode).toBe(401);
    expect(await r.body.json()).toMatchObject({ code: WIRE_ERROR.clusterAuth, details: { reason: 'audience' } });
    expect(b.table.servers.get('hb-3')).toBeUndefined();

    let drains = 0;
    let agentBase = '';
    const api = buildControlApi({
      secret: SECRET,
      log: silentLog,
      audiences: () => (agentBase ? audiencesFor([agentBase]) : undefined),
      handlers: {
        status: () => ({ state: 'running' }),
        drain: async () => ({ drains: ++drains }),
        undrain: async () => ({}),
        restart: async () => ({}),
        patchNotice: () => ({ ok: true }),
      },
    });
    await new Promise<void>((res) => api.listen(0, '127.0.0.1', () => res()));
    cleanups.push(() => new Promise((res) => api.close(res)));
    agentBase = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
    const drain = await request(agentBase + AGENT_PATH.drain, {
      method: 'POST',
      body: '{}',
      headers: { 'content-type': 'application/json', ...signClusterRequest(SECRET, 'booster-x', 'POST', AGENT_PATH.drain, '{}') },
    });
    expect(drain.statusCode).toBe(401);
    expect(await drain.body.json()).toMatchObject({ code: WIRE_ERROR.clusterAuth, details: { reason: 'audience' } });
    expect(drains).toBe(0);
    // Addressed to it, the same call works.
    expect((await createClusterClient({ secret: SECRET, nodeId: 'booster-x' }).call(agentBase, 'POST', AGENT_PATH.drain, {})).status).toBe(200);
    expect(drains).toBe(1);
  });

  it('the data plane refuses /_internal/ however it is spelled; nothing reaches the app server', async () => {
    const b = await startBooster('auth-internal');
    await until(() => b.role() === 'active', 'booster active');
    const f = await startFixtureServer({ id: 'int-1', boosters: [b.base], knex: tdb.knex });
    cleanups.push(() => f.stop());
    await f.heartbeatNow();
    await until(() => b.table.routable.length >= 1, 'server routable');
    const port = Number(new URL(b.base).port);
    for (const path of [
      '/_internal/steps/dispatch',
      '/%5Finternal/steps/dispatch',
      '/%5finternal/steps/%64ispatch',
      '/x/../_internal/steps/dispatch',
      '/x/%2e%2e/_internal/steps/dispatch',
    ]) {
      // node:http sends the path exactly as written (no URL normalisation on the client side).
      const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        httpRequest({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'content-type': 'application/json' } }, (m) => {
          let text = '';
          m.on('data', (d: Buffer) => (text += d));
          m.on('end', () => resolve({ status: m.statusCode ?? 0, body: text }));
        })
          .on('error', reject)
          .end('{}');
      });
      expect(res.status, path).toBe(403);
      expect(JSON.parse(res.body).code, path).toBe('BOOSTER_ERR_INTERNAL_PATH');
    }
    expect(f.seen.filter((x) => /internal/i.test(decodeURIComponent(x.url)))).toEqual([]);
  });

  it('the agent control API refuses unsigned and replayed calls', async () => {
    let drains = 0;
    const api = buildControlApi({
      secret: SECRET,
      log: silentLog,
      handlers: {
        status: () => ({ state: 'running' }),
        drain: async () => ({ drains: ++drains }),
        undrain: async () => ({}),
        restart: async () => ({}),
        patchNotice: () => ({ ok: true }),
      },
    });
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise((r) => api.close(r)));
    const base = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
    const anon = await request(base + AGENT_PATH.status);
    expect(anon.statusCode).toBe(401);
    expect(((await anon.body.json()) as { code: string }).code).toBe(WIRE_ERROR.clusterAuth);
    const cap = captureRequests();
    try {
      const r = await createClusterClient({ secret: SECRET, nodeId: 'booster-x' }).call(base, 'POST', AGENT_PATH.drain, {});
      expect(r.status).toBe(200);
      const replay = await send(base, cap.seen.find((c) => c.path === AGENT_PATH.drain)!);
      expect(replay.status).toBe(401);
      expect(replay.json().code).toBe(WIRE_ERROR.clusterReplay);
      expect(drains).toBe(1);
    } finally {
      cap.stop();
    }
  });
});
