import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReleaseStore } from '../../agent/releases.js';
import { Supervisor } from '../../agent/supervisor.js';
import { createLogger } from '../../common/log.js';

// A loopback "server" whose /healthz stalls for the first N requests.
let stallNext = 0;
let server: Server;
let port: number;
const dir = mkdtempSync(join(tmpdir(), 'omflow-sup-checks-'));

beforeAll(async () => {
  server = createServer((_req, res) => {
    if (stallNext > 0) {
      stallNext--;
      setTimeout(() => res.writeHead(200).end('{}'), 600).unref();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

function supervisor(): Supervisor {
  return new Supervisor({
    dataDir: dir,
    releases: new ReleaseStore(dir, { keep: 3 }),
    server: { host: '127.0.0.1', port, publicUrl: `http://127.0.0.1:${port}` },
    env: {},
    agentUrl: () => 'http://127.0.0.1:1',
    timings: {
      startTimeoutMs: 1000,
      stopTimeoutMs: 1000,
      drainTimeoutMs: 0,
      drainSettleMs: 0,
      quickIntervalMs: 1000,
      quickTimeoutMs: 150,
      deepIntervalMs: 1000,
      deepTimeoutMs: 150,
      failureThreshold: 2,
      backoffMs: 10,
      backoffMaxMs: 10,
      maxRecoveries: 1,
      recoveryWindowMs: 1000,
    },
    log: createLogger({ name: 'test', level: 'silent' }),
    drain: async () => {},
    undrain: async () => {},
    onTransition: () => {},
  });
}

describe('health checks', () => {
  it('a check that times out once is retried at once and counts as passed', async () => {
    stallNext = 1;
    expect((await supervisor().quickCheck()).result).toBe('ok');
    stallNext = 1;
    expect((await supervisor().deepCheck()).result).toBe('ok');
  });

  it('two timeouts in a row are a failed check', async () => {
    stallNext = 2;
    expect((await supervisor().quickCheck()).result).toBe('timeout');
  });
});
