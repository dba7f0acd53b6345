import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { type RunningProcess, startOmflow, stopAll } from '../helpers/processes.js';
import { type FixtureServer, freePort, SECRET, startFixtureServer } from './fixtures.js';

/**
 * `systemctl reload` of a running booster pair member (SIGHUP to `omflow booster --config FILE`,
 * with data-plane workers) while requests keep coming: the reloadable settings change in the
 * primary and in the workers, the others are named as needing a restart, an invalid file changes
 * nothing, and no request fails and no takeover happens.
 */
const TOKEN_1 = 'operator-token-one-0123456789';
const TOKEN_2 = 'operator-token-two-0123456789';
const ALICE = 'alice-write-token-0123456789';

let tdb: TestDatabase;
const dir = mkdtempSync(join(tmpdir(), 'omflow-reload-'));
const fixtures: FixtureServer[] = [];
beforeAll(async () => {
  tdb = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
});
afterAll(async () => {
  for (const f of fixtures) await f.stop();
  await stopAll();
  await tdb?.drop();
  rmSync(dir, { recursive: true, force: true });
});

const envFile = (values: Record<string, string | number>) =>
  `${Object.entries(values)
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`;

async function statusWith(url: string, token: string): Promise<number> {
  const r = await request(url + BOOSTER_PATH.status, { headers: { authorization: `Bearer ${token}` } });
  await r.body.dump();
  return r.statusCode;
}

async function maintenanceOffWith(url: string, token: string): Promise<number> {
  const r = await request(url + BOOSTER_PATH.maintenance, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ on: false }),
  });
  await r.body.dump();
  return r.statusCode;
}

const cluster = createClusterClient({ secret: SECRET, nodeId: 'test' });
async function status(url: string): Promise<{ role: string; epoch: number; servers: { id: string; state: string }[] }> {
  const r = await cluster.call(url, 'GET', BOOSTER_PATH.status, undefined, { timeoutMs: 2000 });
  if (!r.ok) throw new Error(`status of ${url}: ${r.status}`);
  return r.body as never;
}

async function metric(url: string, name: string): Promise<number> {
  const r = await cluster.call(url, 'GET', BOOSTER_PATH.metrics, undefined, { timeoutMs: 2000 });
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(String(r.body));
  return m ? Number(m[1]) : Number.NaN;
}

/** The booster's log lines (pino JSON) whose message is `msg`. */
function logLines(p: RunningProcess, msg: string): Record<string, unknown>[] {
  return p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{') && l.includes(`"msg":"${msg}"`))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('reload without restart (SIGHUP), real processes under load', () => {
  it('applies the reloadable settings in the primary and its workers, names the rest, refuses an invalid file; no failed request, no takeover', async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const urlA = `http://127.0.0.1:${portA}`;
    const urlB = `http://127.0.0.1:${portB}`;
    const accessLog = join(dir, 'access.log');
    const common = {
      OMFLOW_DB_URL: tdb.url,
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_BOOSTER_HOST: '127.0.0.1',
      OMFLOW_BOOSTER_SLOW_START_MS: 0,
      OMFLOW_DATA_DIR: dir,
      OMFLOW_LOG_LEVEL: 'info',
    };
    const base = {
      ...common,
      OMFLOW_NODE_ID: 'reload-a',
      OMFLOW_BOOSTER_PORT: portA,
      OMFLOW_BOOSTER_PEER_URL: urlB,
      OMFLOW_BOOSTER_WORKERS: 2,
      OMFLOW_BOOSTER_OPERATOR_TOKEN: TOKEN_1,
    };
    const file = join(dir, 'booster.env');
    writeFileSync(file, envFile(base));
    // Only PATH and HOME come from the environment: the file is the whole configuration, as under systemd.
    const a = startOmflow('booster-a', ['--config', file, 'booster'], { OMFLOW_LOG_LEVEL: undefined });
    await waitFor(async () => (await status(urlA).catch(() => null))?.role === 'active', { what: 'A active', timeoutMs: 30_000, intervalMs: 100 });
    const b = startOmflow('booster-b', ['booster'], {
      ...Object.fromEntries(Object.entries(common).map(([k, v]) => [k, String(v)])),
      OMFLOW_NODE_ID: 'reload-b',
      OMFLOW_BOOSTER_PORT: String(portB),
      OMFLOW_BOOSTER_PEER_URL: urlA,
      OMFLOW_BOOSTER_WORKERS: '1',
    });
    for (const id of ['rl-1', 'rl-2']) {
      const f = await startFixtureServer({ id, boosters: [urlA, urlB] });
      fixtures.push(f);
    }
    await waitFor(async () => (await status(urlA)).servers.filter((s) => s.state === 'up').length === 2, {
      what: 'both servers up on A',
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    await waitFor(async () => (await status(urlB).catch(() => null))?.role === 'standby', { what: 'B standby', timeoutMs: 30_000, intervalMs: 100 });
    const epoch = (await status(urlA)).epoch;
    const takeovers = await metric(urlA, 'omflow_booster_takeovers_total');
    expect(await statusWith(urlA, TOKEN_1)).toBe(200);

    // Load: keep-alive clients, GETs and 1 KB POSTs, until the reloads are done.
    const agent = new Agent({ connections: 16 });
    let running = true;
    let ok = 0;
    const failures: string[] = [];
    const client = async (n: number) => {
      for (let i = 0; running; i++) {
        try {
          const r = await request(`${urlA}/load/${n}/${i}`, {
            dispatcher: agent,
            method: i % 2 ? 'POST' : 'GET',
            body: i % 2 ? Buffer.alloc(1024, 'x') : undefined,
          });
          await r.body.dump();
          if (r.statusCode === 200) ok++;
          else failures.push(`status ${r.statusCode}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, (_, n) => client(n)));
    await waitFor(() => ok > 50, { what: 'load flowing', timeoutMs: 60_000 });

    // 1. Reloadable settings (operator token, access log, timeouts that renew the upstream pools,
    //    limits, health intervals, log level) and one that needs a restart (the lease length).
    writeFileSync(
      file,
      envFile({
        ...base,
        OMFLOW_BOOSTER_OPERATOR_TOKEN: TOKEN_2,
        OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS: `alice:${ALICE}`,
        OMFLOW_BOOSTER_ACCESS_LOG: 'json',
        OMFLOW_BOOSTER_ACCESS_LOG_FILE: accessLog,
        OMFLOW_BOOSTER_CONNECT_TIMEOUT_MS: 1500,
        OMFLOW_BOOSTER_KEEPALIVE_MS: 3000,
        OMFLOW_BOOSTER_MAX_INFLIGHT_PER_SERVER: 128,
        OMFLOW_BOOSTER_HEALTH_INTERVAL_MS: 300,
        OMFLOW_LOG_LEVEL: 'debug',
        OMFLOW_BOOSTER_LEASE_MS: 900,
      }),
    );
    process.kill(a.pid, 'SIGHUP');
    const reloaded = await waitFor(() => logLines(a, 'configuration reloaded')[0], { what: 'the reload line', timeoutMs: 20_000 });
    expect(reloaded.changed).toEqual(
      expect.arrayContaining([
        'OMFLOW_LOG_LEVEL',
        'OMFLOW_BOOSTER_OPERATOR_TOKEN',
        'OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS',
        'OMFLOW_BOOSTER_ACCESS_LOG',
        'OMFLOW_BOOSTER_ACCESS_LOG_FILE',
        'OMFLOW_BOOSTER_CONNECT_TIMEOUT_MS',
        'OMFLOW_BOOSTER_KEEPALIVE_MS',
        'OMFLOW_BOOSTER_MAX_INFLIGHT_PER_SERVER',
        'OMFLOW_BOOSTER_HEALTH_INTERVAL_MS',
      ]),
    );
    expect(reloaded.needsRestart).toEqual(['OMFLOW_BOOSTER_LEASE_MS']);
    // Secrets are named, never shown.
    expect(a.output()).not.toContain(TOKEN_2);
    expect(await statusWith(urlA, TOKEN_2)).toBe(200);
    expect(await statusWith(urlA, TOKEN_1)).toBe(401);
    // A write token added by the reload runs a command; the read token still may not.
    expect(await maintenanceOffWith(urlA, ALICE)).toBe(200);
    expect(await maintenanceOffWith(urlA, TOKEN_2)).toBe(403);
    // The workers took it too: the access log they write (the primary proxies nothing).
    const readAccess = () => (existsSync(accessLog) ? readFileSync(accessLog, 'utf8').split('\n').filter(Boolean) : []);
    const lines = (await waitFor(() => (readAccess().length > 20 ? readAccess() : null), { what: 'access-log lines from the workers', timeoutMs: 20_000 }))!;
    const pids = new Set(lines.map((l) => (JSON.parse(l) as { pid: number }).pid));
    expect(pids.has(a.pid)).toBe(false);

    // 2. An invalid file: refused, the running settings stay.
    writeFileSync(file, envFile({ ...base, OMFLOW_BOOSTER_OPERATOR_TOKEN: TOKEN_2, OMFLOW_BOOSTER_QUEUE_SIZE: -5 }));
    process.kill(a.pid, 'SIGHUP');
    await waitFor(() => logLines(a, 'reload refused: the configuration is invalid; the running settings are kept').length === 1, {
      what: 'the refusal',
      timeoutMs: 20_000,
    });
    expect(await statusWith(urlA, TOKEN_2)).toBe(200);

    // 3. Reloads in a row, each one renewing the upstream pools under load.
    for (let i = 0; i < 5; i++) {
      writeFileSync(
        file,
        envFile({
          ...base,
          OMFLOW_BOOSTER_OPERATOR_TOKEN: TOKEN_2,
          OMFLOW_BOOSTER_CONNECT_TIMEOUT_MS: 1000 + i,
          OMFLOW_BOOSTER_HEADERS_TIMEOUT_MS: 50_000 + i,
        }),
      );
      process.kill(a.pid, 'SIGHUP');
      await waitFor(() => logLines(a, 'configuration reloaded').length === 2 + i, { what: `reload ${i + 3}`, timeoutMs: 20_000 });
      const before = ok;
      await waitFor(() => ok > before + 20, { what: 'requests after the reload', timeoutMs: 60_000 });
    }

    running = false;
    await load;
    await agent.close();
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(150);
    // No takeover: the same active, the same epoch, no new lease acquisition, the standby still standby.
    const after = await status(urlA);
    expect(after.role).toBe('active');
    expect(after.epoch).toBe(epoch);
    expect(await metric(urlA, 'omflow_booster_takeovers_total')).toBe(takeovers);
    expect((await status(urlB)).role).toBe('standby');
    expect(b.output()).not.toContain('this booster is now the active');
    process.stdout.write(`reload under load: ${ok} requests, ${failures.length} failed, 7 reloads (1 refused), epoch ${epoch} kept\n`);
  });
});
