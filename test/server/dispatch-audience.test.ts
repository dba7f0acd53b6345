import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signClusterRequest } from '../../common/protocol/cluster-auth.js';
import { SERVER_PATH } from '../../common/protocol/headers.js';
import { WIRE_ERROR } from '../../common/protocol/wire-errors.js';
import { buildServer } from '../../server/app.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { SECRET, serverConfig } from './helpers.js';

/**
 * POST /_internal/steps/dispatch is addressed: once the server knows the URL the boosters dial,
 * a dispatch signed for another server (captured on its way there) or for no server is refused
 * before it is parsed, so a sniffer on the network cannot replay it here.
 */
const SELF = 'http://10.9.8.7:8000';

describe('step dispatch audience', () => {
  let t: TestDatabase;
  let app: FastifyInstance;
  beforeAll(async () => {
    t = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
    app = await buildServer({ config: serverConfig(t.url, { BOOSTER_IP: '127.0.0.1', BOOSTER_PORT: '1', OMFLOW_SERVER_URL: SELF }), db: t.db });
    app.omflow.startBackground(SELF);
  });
  afterAll(async () => {
    await app?.omflow.shutdown(1000);
    await t?.drop();
  });

  const dispatch = (audience?: string) => {
    // A step that does not exist: only a dispatch that passes authentication gets as far as the step lookup.
    const payload = JSON.stringify({ stepId: 987654, epoch: 1, leaseMs: 1000, attempt: 1 });
    return app.inject({
      method: 'POST',
      url: SERVER_PATH.dispatchStep,
      payload,
      headers: {
        'content-type': 'application/json',
        ...signClusterRequest(SECRET, 'booster-a', 'POST', SERVER_PATH.dispatchStep, payload, Date.now(), { audience }),
      },
    });
  };

  it('refuses a dispatch signed for another server or for none; accepts one signed for this server', async () => {
    const other = await dispatch('10.9.8.6:8000');
    expect(other.statusCode).toBe(401);
    expect(other.json()).toMatchObject({ code: WIRE_ERROR.clusterAuth, details: { reason: 'audience' } });
    const none = await dispatch(undefined);
    expect(none.statusCode).toBe(401);
    expect(none.json()).toMatchObject({ code: WIRE_ERROR.clusterAuth, details: { reason: 'audience' } });
    const mine = await dispatch('10.9.8.7:8000');
    expect(mine.json().code).not.toBe(WIRE_ERROR.clusterAuth);
    expect(mine.statusCode).not.toBe(401);
  });
});
