import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CommonErrors } from '../../common/errors.js';
import { ReplayGuard, verifyClusterRequest } from '../../common/protocol/cluster-auth.js';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { HEADER } from '../../common/protocol/headers.js';
import { readBody } from '../../common/protocol/signed-endpoint.js';
import { WIRE_ERROR, wireErrorCode } from '../../common/protocol/wire-errors.js';
import { ServerErrors } from '../../server/errors.js';

const SECRET = 'unit-test-cluster-secret';
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

interface Got {
  at: string;
  ok: boolean;
  audience: string | undefined;
  nonce: string | undefined;
  body: string;
}

/** A loopback receiver that verifies like a booster does and records the order of arrival. */
async function receiver(log: Got[], answer: (req: IncomingMessage, res: ServerResponse) => void = (_q, res) => res.end('{"ok":true}')): Promise<string> {
  const guard = new ReplayGuard();
  const srv = createServer(async (req, res) => {
    const body = await readBody(req, 65536);
    const url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const ok = verifyClusterRequest(SECRET, { method: req.method!, path: req.url!, headers: req.headers, body }, Date.now(), {
      replay: guard,
      audiences: [new URL(url).host],
    }).ok;
    log.push({
      at: url,
      ok,
      audience: req.headers[HEADER.clusterAudience] as string,
      nonce: req.headers[HEADER.clusterNonce] as string,
      body: body.toString(),
    });
    answer(req, res);
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

describe('cluster client', () => {
  it('signs each send for its receiver and calls the booster last seen active first', async () => {
    const log: Got[] = [];
    const standby = await receiver(log, (_q, res) => res.end(JSON.stringify({ role: 'standby', activeUrl: null })));
    const active = await receiver(log, (_q, res) => res.end(JSON.stringify({ role: 'active' })));
    const client = createClusterClient({ secret: SECRET, nodeId: 'srv-1' });
    const first = await client.toEveryBooster([standby, active], 'POST', '/_booster/heartbeat', { n: 1 });
    expect(first.map((r) => [r.url, r.ok])).toEqual([
      [standby, true],
      [active, true],
    ]);
    expect(client.knownActive).toBe(active);
    log.length = 0;
    const second = await client.toEveryBooster([standby, active], 'POST', '/_booster/heartbeat', { n: 2 });
    // Replies in the order given; the active was called first.
    expect(second.map((r) => r.url)).toEqual([standby, active]);
    expect(log.map((g) => g.at)).toEqual([active, standby]);
    expect(log.every((g) => g.ok)).toBe(true);
    expect(log.map((g) => g.audience)).toEqual([new URL(active).host, new URL(standby).host]);
    expect(new Set(log.map((g) => g.nonce)).size).toBe(2);
    expect(log[0].body).toBe('{"n":2}');
  });

  it('a booster that is down or silent costs one timeout and is a reply, not a throw', async () => {
    const log: Got[] = [];
    const up = await receiver(log);
    const silent = createServer(() => {});
    servers.push(silent);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const silentUrl = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const client = createClusterClient({ secret: SECRET, nodeId: 'a', timeoutMs: 5000 });
    const replies = await client.toEveryBooster([silentUrl, 'http://127.0.0.1:1', up], 'POST', '/x', {}, { timeoutMs: 200 });
    expect(replies.map((r) => [r.ok, r.status])).toEqual([
      [false, 0],
      [false, 0],
      [true, 200],
    ]);
    expect(replies[0].error).toBeTruthy();
    silent.closeAllConnections();
  });

  it('hands back the wire error code of a refusal', async () => {
    const url = await receiver([], (_q, res) => {
      res.statusCode = 409;
      res.end(JSON.stringify(ServerErrors.SERVER_ERR_STALE_EPOCH().toJSON()));
    });
    const r = await createClusterClient({ secret: SECRET, nodeId: 'b' }).call(url, 'POST', '/_internal/steps/dispatch', { stepId: 1 });
    expect(r).toMatchObject({ ok: false, status: 409 });
    expect(wireErrorCode(r.body)).toBe(WIRE_ERROR.staleEpoch);
  });

  it('wire codes match their catalogues', () => {
    expect(WIRE_ERROR.staleEpoch).toBe(ServerErrors.SERVER_ERR_STALE_EPOCH.code);
    expect(WIRE_ERROR.clusterReplay).toBe(CommonErrors.COMMON_ERR_CLUSTER_REPLAY.code);
    expect(WIRE_ERROR.operatorAuth).toBe(CommonErrors.COMMON_ERR_OPERATOR_AUTH.code);
  });
});
