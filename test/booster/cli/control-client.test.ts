import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callControl, controlCredentials } from '../../../booster/cli/control-client.js';
import { HEADER } from '../../../common/protocol/headers.js';

/** What the operator commands send, seen by a loopback server standing in for a Booster. */
describe('operator command credentials', () => {
  const seen: IncomingHttpHeaders[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  });
  let base = '';
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const env = {
    OMFLOW_CLUSTER_SECRET: 'control-client-secret-0123456789',
    OMFLOW_OPERATOR_TOKEN: 'alice-token-0123456789012345678',
    OMFLOW_BOOSTER_OPERATOR_TOKEN: 'read-token-0123456789012345678',
  };

  it("a read sends the operator's own token even where the cluster secret is configured (failed before: signed, which a Booster refuses through the VIP)", async () => {
    await callControl(base, 'GET', '/_booster/status', controlCredentials({ env, configFile: undefined }, 'read'));
    expect(seen.at(-1)?.authorization).toBe(`Bearer ${env.OMFLOW_OPERATOR_TOKEN}`);
    expect(seen.at(-1)?.[HEADER.clusterSignature]).toBeUndefined();
  });

  it('without an operator token a Booster host signs (its read token stays unused)', async () => {
    const { OMFLOW_OPERATOR_TOKEN: _, ...hostEnv } = env;
    await callControl(base, 'GET', '/_booster/status', controlCredentials({ env: hostEnv, configFile: undefined }, 'read'));
    expect(seen.at(-1)?.authorization).toBeUndefined();
    expect(seen.at(-1)?.[HEADER.clusterSignature]).toBeDefined();
  });

  it('without a secret the read token is used for reads', async () => {
    await callControl(
      base,
      'GET',
      '/_booster/status',
      controlCredentials({ env: { OMFLOW_BOOSTER_OPERATOR_TOKEN: env.OMFLOW_BOOSTER_OPERATOR_TOKEN }, configFile: undefined }, 'read'),
    );
    expect(seen.at(-1)?.authorization).toBe(`Bearer ${env.OMFLOW_BOOSTER_OPERATOR_TOKEN}`);
  });
});
