import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../booster/booster.js';
import { applyPatch } from '../../common/patch/index.js';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { AGENT_PATH, BOOSTER_PATH, SERVER_PATH } from '../../common/protocol/headers.js';
import { buildServer } from '../../server/app.js';
import { SECRET as AGENT_SECRET, type AgentNode, killServerGroup, makeAgentNode, startBoosterRecorder, waitForState } from '../agent/harness.js';
import { fixturePatch, makeKey, trustOnly } from '../agent/helpers.js';
import { boosterConfig, type FixtureServer, SECRET, silentLog, startFixtureServer } from '../booster/fixtures.js';
import { selfSignedCert } from '../helpers/certs.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { stopAll } from '../helpers/processes.js';
import { SECRET as SERVER_SECRET, serverConfig } from '../server/helpers.js';

/**
 * The shipped monitoring files (install/monitoring/): promtool checks and unit-tests the alert
 * rules, and every metric the rules and the Grafana dashboard read is exported by a real Booster
 * (with TLS and a peer), a real agent process and a real app server, with the values an operator
 * alerts on; /metrics of agents and app servers follows the Booster's token rules.
 */
const MONITORING = fileURLToPath(new URL('../../install/monitoring/', import.meta.url));
const RULES = join(MONITORING, 'omflow-alerts.yml');
const DASHBOARD = join(MONITORING, 'omflow-grafana-dashboard.json');
const TOKEN = 'monitoring-operator-token-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'omflow-monitoring-'));

function promtool(...args: string[]): { code: number; out: string } {
  const r = spawnSync('promtool', args, { cwd: MONITORING, encoding: 'utf8' });
  if (r.error) throw new Error(`promtool is needed (Debian: apt-get install prometheus): ${r.error.message}`);
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** The value of one series of an exposition (the first line whose name and labels match). */
function value(exposition: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('monitoring files', () => {
  it('promtool checks the alert rules and passes their unit tests', () => {
    const check = promtool('check', 'rules', RULES);
    expect(check.code, check.out).toBe(0);
    expect(check.out).toMatch(/SUCCESS: \d+ rules found/);
    const test = promtool('test', 'rules', 'omflow-alerts.test.yml');
    expect(test.code, test.out).toBe(0);
    expect(test.out).toContain('SUCCESS');
  });
});

describe('the metrics the rules and the dashboard read, from real processes', () => {
  let tdb: TestDatabase;
  let booster: Booster & { base: string };
  let standby: Booster & { base: string };
  let fixture: FixtureServer;
  let app: FastifyInstance;
  let serverUrl = '';
  let agent: AgentNode;
  let recorder: Awaited<ReturnType<typeof startBoosterRecorder>>;
  const cert = { days: 40 };
  const exposition = { booster: '', agent: '', server: '' };
  const cluster = createClusterClient({ secret: SECRET, nodeId: 'prometheus' });

  beforeAll(async () => {
    tdb = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
    // The first booster is the active; the one with TLS and a peer (the one mostly looked at) its standby.
    const s = createBooster({ config: boosterConfig('mon-plain', { OMFLOW_BOOSTER_WORKERS: 1 }), db: tdb.db, log: silentLog });
    standby = Object.assign(s, { base: await s.listen() });
    await waitFor(() => s.role() === 'active', { what: 'the first booster active' });
    const tls = selfSignedCert(dir, 'monitoring', cert.days);
    const b = createBooster({
      config: boosterConfig('mon-tls', {
        OMFLOW_BOOSTER_TLS_CERT_FILE: tls.certFile,
        OMFLOW_BOOSTER_TLS_KEY_FILE: tls.keyFile,
        OMFLOW_BOOSTER_PEER_URL: standby.base,
        OMFLOW_BOOSTER_OPERATOR_TOKEN: TOKEN,
      }),
      db: tdb.db,
      log: silentLog,
      version: '9.8.7',
    });
    // The plain /_booster/ URL (the port speaks TLS, and plain HTTP for the cluster API).
    booster = Object.assign(b, { base: (await b.listen()).replace(/^https:/, 'http:') });
    fixture = await startFixtureServer({ id: 'mon-s1', boosters: [booster.base, standby.base] });
    await waitFor(() => b.table.routable.length === 1, { what: 'the server routable' });
    const key = makeKey();
    await applyPatch(tdb.db, fixturePatch(key, '3.1.0', 1), trustOnly(key));

    app = await buildServer({ config: serverConfig(tdb.url, { OMFLOW_SERVER_OPERATOR_TOKEN: TOKEN }), db: tdb.db });
    await app.listen({ host: '127.0.0.1', port: 0 });
    serverUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;

    recorder = await startBoosterRecorder();
    agent = await makeAgentNode({ nodeId: 'mon-agent', dbUrl: tdb.url, boosterPort: recorder.port, extraEnv: { OMFLOW_SERVER_OPERATOR_TOKEN: TOKEN } });
    agent.start();
    await waitForState(agent, 'running');
  });
  afterAll(async () => {
    await stopAll();
    if (agent) {
      killServerGroup(agent);
      rmSync(agent.dataDir, { recursive: true, force: true });
    }
    await recorder?.close();
    await app?.close();
    await fixture?.stop();
    await booster?.close();
    await standby?.close();
    await tdb?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a Booster exports what operators alert on: server state, license and certificate time left, peer, rollout, build', async () => {
    const r = await request(`${booster.base.replace(/^http:/, 'https:')}${BOOSTER_PATH.metrics}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
      dispatcher: new Agent({ connect: { rejectUnauthorized: false } }),
    });
    expect(r.statusCode).toBe(200);
    const text = await r.body.text();
    exposition.booster = text;
    expect(value(text, 'omflow_build_info', { version: '9.8.7', role: 'booster', node: 'mon-tls' })).toBe(1);
    expect(value(text, 'omflow_booster_server_state', { server: 'mon-s1', state: 'up' })).toBe(1);
    expect(value(text, 'omflow_booster_server_state', { server: 'mon-s1', state: 'down' })).toBe(0);
    // A fresh cluster is in its 7-day trial.
    expect(value(text, 'omflow_license_state', { state: 'trial' })).toBe(1);
    const licenseLeft = value(text, 'omflow_license_expiry_seconds')!;
    expect(licenseLeft).toBeGreaterThan(6 * 86400);
    expect(licenseLeft).toBeLessThanOrEqual(7 * 86400);
    expect(value(text, 'omflow_license_gate_open')).toBe(1);
    const certLeft = value(text, 'omflow_booster_tls_certificate_expiry_seconds')!;
    expect(certLeft).toBeGreaterThan((cert.days - 1) * 86400);
    expect(certLeft).toBeLessThanOrEqual(cert.days * 86400);
    // It reaches the other booster of its pair.
    await waitFor(async () => value(String((await cluster.call(booster.base, 'GET', BOOSTER_PATH.metrics)).body), 'omflow_booster_peer_reachable') === 1, {
      what: 'peer reachable',
    });
    // The rollout is read in the background (a scrape never waits on the database): within a read
    // interval it shows in the state the database holds (the test's agent refuses the patch, so it
    // may be halted by then).
    await waitFor(
      async () => {
        const stored = (await tdb.db.knex('rollouts').select('state').orderBy('id', 'desc').first()) as { state: string };
        const scraped = String((await cluster.call(booster.base, 'GET', BOOSTER_PATH.metrics)).body);
        return value(scraped, 'omflow_rollout_state', { version: '3.1.0', state: stored.state }) === 1;
      },
      { what: 'the rollout in the metrics', timeoutMs: 15_000, intervalMs: 200 },
    );
    expect(value(text, 'omflow_rollout_nodes', {})).toBeUndefined(); // no agent has started on it
    expect(value(text, 'omflow_booster_inflight', { server: 'mon-s1' })).toBe(0);
    expect(value(text, 'omflow_booster_concurrency_limit', { server: 'mon-s1' })).toBeGreaterThan(0);
    // The active (the one without peer and TLS, unless a loaded machine moved the lease) after it proxied a request.
    const active = standby.role() === 'active' ? standby : booster;
    const through = await request(`${active.base}/through`);
    await through.body.dump();
    expect(through.statusCode).toBe(200);
    const afterRequest = String((await cluster.call(active.base, 'GET', BOOSTER_PATH.metrics)).body);
    exposition.booster += `\n${afterRequest}`;
    expect(value(afterRequest, 'omflow_booster_requests_total', { server: 'mon-s1', class: '2xx' })).toBeGreaterThanOrEqual(1);
    expect(value(afterRequest, 'omflow_booster_active')).toBe(1);
    // A booster without a peer or TLS has neither series.
    const plain = String((await cluster.call(standby.base, 'GET', BOOSTER_PATH.metrics)).body);
    expect(plain).not.toMatch(/^omflow_booster_tls_certificate_expiry_seconds /m);
    expect(plain).not.toMatch(/^omflow_booster_peer_reachable /m);
  });

  it('an app server’s /_internal/metrics: the operator token or a signature, never through a Booster', async () => {
    await request(`${serverUrl}/healthz`).then((r) => r.body.dump());
    const anonymous = await request(`${serverUrl}${SERVER_PATH.metrics}`);
    expect(anonymous.statusCode).toBe(401);
    expect(((await anonymous.body.json()) as { code: string }).code).toBe('COMMON_ERR_OPERATOR_AUTH');
    const wrong = await request(`${serverUrl}${SERVER_PATH.metrics}`, { headers: { authorization: 'Bearer not-the-token-0123456789012345' } });
    expect(wrong.statusCode).toBe(401);
    await wrong.body.dump();
    const byToken = await request(`${serverUrl}${SERVER_PATH.metrics}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(byToken.statusCode).toBe(200);
    const text = await byToken.body.text();
    exposition.server = text;
    expect(value(text, 'omflow_build_info', { role: 'server' })).toBe(1);
    expect(value(text, 'omflow_server_requests_total', { class: '2xx' })).toBeGreaterThanOrEqual(1);
    expect(value(text, 'omflow_server_db_reachable')).toBe(1);
    const signed = await createClusterClient({ secret: SERVER_SECRET, nodeId: 'prometheus' }).call(serverUrl, 'GET', SERVER_PATH.metrics);
    expect(signed.status).toBe(200);
    // Through the data plane: /_internal/ is refused by the (active) Booster.
    const active = standby.role() === 'active' ? standby : booster;
    const proxied = await request(`${active.base}${SERVER_PATH.metrics}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(proxied.statusCode).toBe(403);
    await proxied.body.dump();
  });

  it('an agent’s /_agent/metrics: the same token rules; the state of its app server and its release', async () => {
    const url = `http://127.0.0.1:${agent.agentPort}${AGENT_PATH.metrics}`;
    const anonymous = await request(url);
    expect(anonymous.statusCode).toBe(401);
    await anonymous.body.dump();
    const r = await request(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(r.statusCode).toBe(200);
    const text = await r.body.text();
    exposition.agent = text;
    expect(value(text, 'omflow_build_info', { role: 'agent', node: 'mon-agent' })).toBe(1);
    expect(value(text, 'omflow_agent_server_state', { state: 'running' })).toBe(1);
    expect(value(text, 'omflow_agent_server_state', { state: 'failed' })).toBe(0);
    expect(value(text, 'omflow_agent_release_info', { version: '0.0.1' })).toBe(1);
    const signed = await createClusterClient({ secret: AGENT_SECRET, nodeId: 'prometheus' }).call(
      `http://127.0.0.1:${agent.agentPort}`,
      'GET',
      AGENT_PATH.metrics,
    );
    expect(signed.status).toBe(200);
  });

  it('every metric the alert rules and the dashboard read is exported by one of them', () => {
    const all = `${exposition.booster}\n${exposition.agent}\n${exposition.server}`;
    expect(exposition.booster && exposition.agent && exposition.server, 'the scrapes above ran').toBeTruthy();
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { targets?: { expr: string }[] }[] };
    const exprs = [readFileSync(RULES, 'utf8'), ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr))].join('\n');
    const names = [...new Set(exprs.match(/\bomflow_[a-z0-9_]+/g))].sort();
    expect(names.length).toBeGreaterThan(20);
    const missing = names.filter((n) => !new RegExp(`^(# TYPE )?${n}[ {]`, 'm').test(all));
    expect(missing).toEqual([]);
  });
});
