import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { type Booster, createBooster } from '../../booster/booster.js';
import { createLicenseGate, type LicenseGate } from '../../booster/license/gate.js';
import { boosterArea, clusterArea } from '../../common/config/areas/index.js';
import { loadConfig } from '../../common/config/load.js';
import { createDatabase, type Database } from '../../common/db/create-database.js';
import type { LicenseVerifier } from '../../common/license/index.js';
import { audienceOf, signClusterRequest } from '../../common/protocol/cluster-auth.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { buildServer } from '../../server/app.js';
import { createHeartbeat } from '../../server/heartbeat.js';
import type { TestDatabase } from '../helpers/db.js';
import { SECRET, serverConfig } from '../server/helpers.js';

/** Launch arguments required by the issue for Debian's Chromium. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
export const CHROMIUM = process.env.OMFLOW_TEST_CHROMIUM || '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);

const log = pino({ level: 'silent' });

export interface MiniCluster {
  boosters: Array<{ booster: Booster; gate: LicenseGate; db: Database; url: string }>;
  /** Two app servers (server-1, server-2): draining one leaves the other to serve the admin. */
  servers: Array<{ id: string; app: FastifyInstance; url: string }>;
  /** The URL a user reaches: the active booster. */
  activeUrl(): string;
  /** Moves the boosters' injected clock (ms from now). */
  setClockOffset(ms: number): void;
  close(): Promise<void>;
}

/**
 * Two in-process boosters (own database pools, injected license clock) in front of one in-process
 * app server that heartbeats to both, as `omflow server` does.
 */
export async function startMiniCluster(t: TestDatabase, verifier: LicenseVerifier): Promise<MiniCluster> {
  let offset = 0;
  const now = () => new Date(Date.now() + offset);
  const boosters: MiniCluster['boosters'] = [];
  const servers: MiniCluster['servers'] = [];
  const heartbeats: Array<ReturnType<typeof createHeartbeat>> = [];
  const close = async () => {
    for (const hb of heartbeats) await hb.stop();
    for (const s of servers) await s.app.close();
    for (const b of boosters.reverse()) {
      await b.booster.close();
      await b.db.destroy();
    }
  };
  try {
    for (const i of [1, 2]) {
      const cfg = loadConfig([clusterArea, boosterArea], {
        env: {
          OMFLOW_CLUSTER_SECRET: SECRET,
          OMFLOW_NODE_ID: `booster-${i}`,
          OMFLOW_BOOSTER_HOST: '127.0.0.1',
          OMFLOW_BOOSTER_PORT: '0',
          OMFLOW_LOG_LEVEL: 'silent',
          // Generous timings: this suite is about the license and the pages, not failover, and CI machines are busy.
          OMFLOW_BOOSTER_LEASE_MS: '8000',
          OMFLOW_BOOSTER_RENEW_MS: '300',
          OMFLOW_BOOSTER_RENEW_DEADLINE_MS: '6000',
          OMFLOW_BOOSTER_HEARTBEAT_TIMEOUT_MS: '15000',
          OMFLOW_BOOSTER_HEALTH_TIMEOUT_MS: '5000',
          OMFLOW_BOOSTER_HEALTH_FALL: '5',
          OMFLOW_BOOSTER_SLOW_START_MS: '0',
          // One process: the suite moves the gate's injected clock and calls gate.refresh() in this
          // process, which workers would only see at the next 100 ms push (production goes through
          // /_booster/license-changed, which waits for every worker). Workers: test/booster/workers.test.ts.
          OMFLOW_BOOSTER_WORKERS: '1',
        },
      });
      const db = createDatabase(t.config);
      const gate = createLicenseGate({ db, log, nodeId: `booster-${i}`, now, verifier, refreshMs: 1000 });
      const booster = createBooster({ config: { cluster: cfg.cluster, booster: cfg.booster }, db, log, licenseGate: gate });
      const url = await booster.listen();
      boosters.push({ booster, gate, db, url });
    }
    const [a, b] = boosters.map((x) => new URL(x.url));
    for (const id of ['server-1', 'server-2']) {
      const config = serverConfig(t.url, {
        OMFLOW_NODE_ID: id,
        BOOSTER_IP: a.hostname,
        BOOSTER_PORT: a.port,
        SECOND_BOOSTER_IP: b.hostname,
        SECOND_BOOSTER_PORT: b.port,
      });
      const app = await buildServer({ config, db: t.db, log, admin: { licenseVerifier: verifier, clusterPollMs: 400 } });
      await app.listen({ host: '127.0.0.1', port: 0 });
      servers.push({ id, app, url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` });
    }
    // The server's own heartbeat module, as `omflow server` runs it (active first, then standby).
    for (const s of servers) {
      const hb = createHeartbeat({
        boosterUrls: boosters.map((x) => x.url),
        secret: SECRET,
        nodeId: s.id,
        url: s.url,
        runtime: s.app.omflow.runtime,
        fence: s.app.omflow.deps.fence,
        knex: t.knex,
        log,
        intervalMs: 300,
      });
      hb.start();
      heartbeats.push(hb);
    }
    return {
      boosters,
      servers,
      activeUrl: () => (boosters.find((x) => x.booster.role() === 'active') ?? boosters[0]).url,
      setClockOffset: (ms) => {
        offset = ms;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** GET /_booster/status of one booster (signed). */
export async function boosterStatus(url: string): Promise<{
  role: string;
  licenseAllowsDistribution: boolean;
  license: { state: string; daysLeft: number | null; customer?: string };
  servers: Array<{ id: string; state: string; draining: boolean }>;
}> {
  const r = await fetch(url + BOOSTER_PATH.status, {
    headers: signClusterRequest(SECRET, 'test', 'GET', BOOSTER_PATH.status, '', Date.now(), { audience: audienceOf(url) }),
    signal: AbortSignal.timeout(3000),
  });
  if (!r.ok) throw new Error(`status ${r.status}`);
  return (await r.json()) as never;
}
