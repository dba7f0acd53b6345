import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Booster, createBooster } from '../../booster/booster.js';
import { generatePatchKeyPair } from '../../common/patch/index.js';
import { boosterConfig, SECRET, silentLog } from '../booster/fixtures.js';
import { selfSignedCert } from '../helpers/certs.js';
import { createTestDatabase, type TestDatabase, vendorsUnderTest } from '../helpers/db.js';
import { waitFor } from '../helpers/poll.js';
import { runOmflow } from '../helpers/processes.js';

/**
 * `omflow config check` as install.sh and the units run it: the real command on real files,
 * against a real database and a real Booster. Exit 0 with what is not ready yet as warnings,
 * 78 with what stops the service, the settings printed with every secret redacted.
 */
const dir = mkdtempSync(join(tmpdir(), 'omflow-config-check-'));
let tdb: TestDatabase;
let peer: Booster & { base: string };
const TOKEN = 'check-operator-token-0123456789';

const makeCert = (name: string) => {
  const c = selfSignedCert(dir, name);
  return { cert: c.certFile, key: c.keyFile };
};

let fileSeq = 0;
/** Writes a configuration file named like the installed ones and checks it, with nothing from the environment. */
async function check(name: 'booster.env' | 'agent.env', values: Record<string, string | number>, ...flags: string[]) {
  const sub = join(dir, `c${++fileSeq}`);
  mkdirSync(sub);
  const file = join(sub, name);
  writeFileSync(
    file,
    `${Object.entries(values)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n')}\n`,
  );
  const r = await runOmflow(['--config', file, 'config', 'check', ...flags], { HOME: dir });
  return { ...r, lines: r.stdout.split('\n') };
}

const line = (lines: string[], level: string, name: string) => lines.find((l) => l.trimStart().startsWith(`${level.padEnd(4)}  ${name}`));

beforeAll(async () => {
  tdb = await createTestDatabase(vendorsUnderTest()[0], { migrate: true });
  const b = createBooster({ config: boosterConfig('check-peer', { OMFLOW_BOOSTER_WORKERS: 1 }), db: tdb.db, log: silentLog });
  peer = Object.assign(b, { base: await b.listen() });
  await waitFor(() => b.role() === 'active', { what: 'peer active' });
});
afterAll(async () => {
  await peer?.close();
  await tdb?.drop();
  rmSync(dir, { recursive: true, force: true });
});

describe('omflow config check', () => {
  const booster = () => ({
    OMFLOW_CLUSTER_SECRET: SECRET,
    OMFLOW_NODE_ID: 'check-a',
    OMFLOW_DB_URL: tdb.url,
    OMFLOW_BOOSTER_PEER_URL: peer.base,
    OMFLOW_BOOSTER_OPERATOR_TOKEN: TOKEN,
  });

  it('a good Booster configuration: every check passes, exit 0, the settings shown with secrets redacted', async () => {
    const { cert, key } = makeCert('good');
    const accessLog = join(dir, 'logs', 'access.log');
    mkdirSync(join(dir, 'logs'));
    const r = await check('booster.env', {
      ...booster(),
      OMFLOW_BOOSTER_TLS_CERT_FILE: cert,
      OMFLOW_BOOSTER_TLS_KEY_FILE: key,
      OMFLOW_BOOSTER_ACCESS_LOG: 'json',
      OMFLOW_BOOSTER_ACCESS_LOG_FILE: accessLog,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.lines[0]).toMatch(/booster configuration from .*booster\.env$/);
    expect(line(r.lines, 'ok', 'configuration')).toBeDefined();
    expect(line(r.lines, 'ok', 'TLS certificate')).toMatch(/CN=good, valid until .* \(\d+ days\), key matches/);
    expect(line(r.lines, 'ok', 'access log')).toContain(accessLog);
    expect(line(r.lines, 'ok', 'database')).toMatch(/reachable and migrated/);
    expect(line(r.lines, 'ok', `HA Booster ${peer.base}`)).toMatch(/answers: active, epoch \d+/);
    expect(r.stdout).toMatch(/^OK: /m);
    // Effective settings: where each value came from; no secret in the output.
    expect(r.stdout).toMatch(/OMFLOW_BOOSTER_PEER_URL=http:\/\/127\.0\.0\.1:\d+ +# file/);
    expect(r.stdout).toMatch(/OMFLOW_BOOSTER_QUEUE_SIZE=1000 +# default/);
    expect(r.stdout).toMatch(/OMFLOW_CLUSTER_SECRET=\[redacted\]/);
    expect(r.stdout).toMatch(/OMFLOW_DB_URL=postgres:\/\/[^:]+:\[redacted\]@/);
    for (const secret of [SECRET, TOKEN, new URL(tdb.url).password]) expect(r.stdout).not.toContain(secret);
    // --quiet (the units): nothing to say when everything is fine.
    expect((await check('booster.env', booster(), '--quiet')).stdout).toBe('');
  });

  it('what stops a Booster fails with 78, each named: a key that does not parse, a key that is not the certificate’s, refused credentials, a missing VIP interface', async () => {
    const bad = await check('booster.env', { ...booster(), OMFLOW_BOOSTER_QUEUE_SIZE: 'lots', OMFLOW_BOOSTER_LEASE_MS: 5 });
    expect(bad.code).toBe(78);
    expect(line(bad.lines, 'fail', 'configuration: OMFLOW_BOOSTER_QUEUE_SIZE')).toMatch(/must be an integer/);
    expect(line(bad.lines, 'fail', 'configuration: OMFLOW_BOOSTER_LEASE_MS')).toMatch(/>= 200/);
    expect(bad.stdout).toMatch(/^FAILED: /m);

    const a = makeCert('a');
    const other = makeCert('other');
    const mismatch = await check('booster.env', { ...booster(), OMFLOW_BOOSTER_TLS_CERT_FILE: a.cert, OMFLOW_BOOSTER_TLS_KEY_FILE: other.key });
    expect(mismatch.code).toBe(78);
    expect(line(mismatch.lines, 'fail', 'TLS certificate')).toMatch(/BOOSTER_ERR_TLS_CERTIFICATE|does not match/);

    const u = new URL(tdb.url);
    u.password = 'wrong-password';
    const refused = await check('booster.env', { ...booster(), OMFLOW_DB_URL: u.href });
    expect(refused.code).toBe(78);
    expect(line(refused.lines, 'fail', 'database')).toMatch(/refused/);
    expect(refused.stdout).not.toContain('wrong-password');

    const vip = await check('booster.env', { ...booster(), OMFLOW_BOOSTER_VIP: '10.99.0.10/24', OMFLOW_BOOSTER_VIP_INTERFACE: 'omflow-nosuch0' });
    expect(vip.code).toBe(78);
    expect(line(vip.lines, 'fail', 'VIP 10.99.0.10/24 on omflow-nosuch0')).toMatch(/no interface omflow-nosuch0/);
  });

  it('what a service rides through is a warning and exit 0: a database or a peer that does not answer; a peer with another secret is named', async () => {
    const r = await check('booster.env', {
      ...booster(),
      OMFLOW_DB_URL: 'postgres://omflow:pw@127.0.0.1:1/omflow',
      OMFLOW_DB_CONNECT_TIMEOUT_MS: 500,
      OMFLOW_BOOSTER_PEER_URL: 'http://127.0.0.1:1',
    });
    expect(r.code, r.stdout).toBe(0);
    expect(line(r.lines, 'warn', 'database')).toMatch(/does not answer.*ECONNREFUSED/);
    expect(line(r.lines, 'warn', 'HA Booster http://127.0.0.1:1')).toMatch(/does not answer/);
    expect(r.stdout).toMatch(/^OK: .*\(2 warnings\)$/m);

    const secret = await check('booster.env', { ...booster(), OMFLOW_CLUSTER_SECRET: 'another-cluster-secret-0123' });
    expect(line(secret.lines, 'warn', `HA Booster ${peer.base}`)).toMatch(/OMFLOW_CLUSTER_SECRET/);
  });

  it('an agent configuration: trusted patch keys, data directory, the Boosters; --json', async () => {
    const key = generatePatchKeyPair();
    const agent = {
      OMFLOW_CLUSTER_SECRET: SECRET,
      OMFLOW_NODE_ID: 'check-agent',
      OMFLOW_DB_URL: tdb.url,
      OMFLOW_DATA_DIR: dir,
      BOOSTER_IP: '127.0.0.1',
      BOOSTER_PORT: new URL(peer.base).port,
      OMFLOW_PATCH_TRUSTED_KEYS: key.trustedEntry,
    };
    const r = await check('agent.env', agent, '--json');
    expect(r.code, r.stdout).toBe(0);
    const out = JSON.parse(r.stdout) as {
      role: string;
      ok: boolean;
      results: { level: string; name: string; detail: string }[];
      settings: { key: string; value: string; from: string }[];
    };
    expect(out.role).toBe('agent');
    expect(out.ok).toBe(true);
    expect(out.results.find((x) => x.name === 'trusted patch keys')).toMatchObject({ level: 'ok' });
    expect(out.results.find((x) => x.name === `Booster ${peer.base}`)).toMatchObject({ level: 'ok' });
    expect(out.settings.find((s) => s.key === 'OMFLOW_PATCH_TRUSTED_KEYS')).toMatchObject({ from: 'file' });

    const broken = await check('agent.env', { ...agent, OMFLOW_PATCH_TRUSTED_KEYS: 'k1=not-a-key', OMFLOW_DATA_DIR: join(dir, 'c1', 'booster.env', 'data') });
    expect(broken.code).toBe(78);
    expect(line(broken.lines, 'fail', 'trusted patch keys')).toBeDefined();
    expect(line(broken.lines, 'fail', 'data directory')).toMatch(/booster\.env is not a directory/);
  });
});
