import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { type CliContext, parseFlags } from '../../common/cli/context.js';
import { boostersArea, boosterUrlsOf } from '../../common/config/areas/boosters.js';
import { clusterArea } from '../../common/config/areas/cluster.js';
import { loadConfig } from '../../common/config/load.js';
import { type LicensePayload, signLicense } from '../../common/license/format.js';
import { createLicenseVerifier } from '../../common/license/verifier.js';
import { BOOSTER_PATH } from '../../common/protocol/headers.js';
import { controlCredentials, getControl } from './status.js';

const USAGE = `Usage:
  omflow license status [--url http://BOOSTER:5169] [--json]
      Prints the license part of GET /_booster/status (state, days left, customer, expiry, servers).
  omflow license issue --key PRIVATE.pem --customer NAME (--expires YYYY-MM-DD | --expires never)
                       [--key-id ID] [--max-servers N] [--cluster-id ID] [--grace-days N]
                       [--not-before YYYY-MM-DD] [--features a,b] [--license-id ID] [--out FILE]
      Vendor tool: writes a signed license file (stdout without --out).
  omflow license verify FILE [--public-key PUBLIC.pem --key-id ID]
      Checks a license file's signature offline (pinned vendor keys unless --public-key).
  omflow license keygen --out PREFIX [--key-id ID]
      Vendor tool: writes PREFIX.pem (Ed25519 private key, mode 0600) and PREFIX.pub.pem.
`;

const DEFAULT_KEY_ID = 'omflow-vendor-2026-1';

function isoDate(v: string, flag: string): string {
  const d = /^\d{4}-\d{2}-\d{2}$/.test(v) ? new Date(`${v}T00:00:00.000Z`) : new Date(v);
  if (Number.isNaN(d.getTime())) throw new Error(`${flag}: not a date: ${v}`);
  return d.toISOString();
}

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const [sub, ...rest] = argv;
  const { flags, positionals } = parseFlags(rest, ['json', 'help']);
  const str = (k: string): string | undefined => (typeof flags[k] === 'string' ? (flags[k] as string) : undefined);
  if (!sub || sub === '--help' || flags.help) {
    ctx.stdout.write(USAGE);
    return sub ? 0 : 2;
  }
  try {
    switch (sub) {
      case 'keygen': {
        const out = str('out');
        if (!out) throw new Error('--out PREFIX is required');
        const { publicKey, privateKey } = generateKeyPairSync('ed25519');
        writeFileSync(`${out}.pem`, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
        const pub = publicKey.export({ type: 'spki', format: 'pem' }).toString();
        writeFileSync(`${out}.pub.pem`, pub);
        ctx.stdout.write(
          `private key: ${out}.pem (keep it offline)\npublic key:  ${out}.pub.pem\npin it in common/license/keys.ts as '${str('key-id') ?? 'NEW-KEY-ID'}':\n${pub}`,
        );
        return 0;
      }
      case 'issue': {
        const keyFile = str('key');
        const customer = str('customer');
        const expires = str('expires');
        if (!keyFile || !customer || !expires) throw new Error('--key, --customer and --expires are required');
        const maxServers = str('max-servers');
        if (maxServers !== undefined && !/^[1-9]\d*$/.test(maxServers)) throw new Error('--max-servers must be a positive integer');
        const grace = str('grace-days') ?? '14';
        if (!/^\d+$/.test(grace)) throw new Error('--grace-days must be an integer');
        const now = new Date();
        const payload: LicensePayload = {
          v: 1,
          licenseId: str('license-id') ?? randomUUID(),
          keyId: str('key-id') ?? DEFAULT_KEY_ID,
          customer,
          issuedAt: now.toISOString(),
          notBefore: str('not-before') ? isoDate(str('not-before')!, '--not-before') : now.toISOString(),
          expiresAt: expires === 'never' ? null : isoDate(expires, '--expires'),
          graceDays: Number(grace),
          clusterId: str('cluster-id') ?? null,
          limits: { maxServers: maxServers ? Number(maxServers) : null },
          features: (str('features') ?? '')
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        };
        const text = signLicense(payload, readFileSync(keyFile, 'utf8'));
        if (str('out')) {
          writeFileSync(str('out')!, text);
          ctx.stdout.write(`license ${payload.licenseId} for ${customer} written to ${str('out')}\n`);
        } else ctx.stdout.write(text);
        return 0;
      }
      case 'verify': {
        const file = positionals[0];
        if (!file) throw new Error('verify FILE');
        const keys = str('public-key') ? { [str('key-id') ?? DEFAULT_KEY_ID]: readFileSync(str('public-key')!, 'utf8') } : undefined;
        const lic = createLicenseVerifier({ keys }).verify(readFileSync(file));
        ctx.stdout.write(
          `valid signature (key ${lic.keyId}): ${lic.customer}, license ${lic.licenseId}, expires ${lic.expiresAt ?? 'never'}, max servers ${lic.limits.maxServers ?? 'unlimited'}, cluster ${lic.clusterId ?? 'any'}\n`,
        );
        return 0;
      }
      case 'status': {
        let urls: string[] = str('url') ? [str('url')!] : [];
        let secret: string | undefined;
        try {
          const cfg = loadConfig([clusterArea, boostersArea], { env: ctx.env, file: ctx.configFile });
          secret = cfg.cluster.secret;
          if (!urls.length) urls = boosterUrlsOf(cfg.boosters);
        } catch {
          // No cluster secret here: the operator token (OMFLOW_BOOSTER_OPERATOR_TOKEN) may do.
          const cfg = loadConfig([boostersArea], { env: ctx.env, file: ctx.configFile });
          if (!urls.length) urls = boosterUrlsOf(cfg.boosters);
        }
        if (!urls.length) urls = ['http://127.0.0.1:5169'];
        let lastErr: unknown;
        for (const base of urls) {
          try {
            const res = await getControl(base, BOOSTER_PATH.status, { ...controlCredentials(ctx), ...(secret ? { secret } : {}) });
            const body = (res.body ?? {}) as { license?: Record<string, unknown> };
            if (res.status !== 200 || !body.license) throw new Error(`${base} answered ${res.status}`);
            const l = body.license as {
              state: string;
              daysLeft: number | null;
              customer?: string;
              expiresAt?: string;
              clusterId?: string;
              servers?: { licensed: number | null; used: number };
              warnings?: string[];
            };
            if (flags.json) ctx.stdout.write(`${JSON.stringify(l, null, 2)}\n`);
            else {
              const line =
                l.state === 'trial'
                  ? `Trial: ${l.daysLeft} day(s) left`
                  : l.state === 'licensed'
                    ? `Licensed to ${l.customer} until ${l.expiresAt ?? 'no expiry'}${l.daysLeft !== null ? ` (${l.daysLeft} day(s) left)` : ''}`
                    : l.state === 'grace'
                      ? `Grace period: licensed to ${l.customer}, expired ${l.expiresAt}, ${l.daysLeft} day(s) of grace left`
                      : 'Expired: the data plane is gated; upload a license at /admin/settings';
              ctx.stdout.write(
                `${line}\ncluster id: ${l.clusterId ?? '-'}\nservers: ${l.servers?.used ?? '?'} used / ${l.servers?.licensed ?? 'unlimited'} licensed\n`,
              );
              for (const w of l.warnings ?? []) ctx.stdout.write(`warning: ${w}\n`);
              ctx.stdout.write(`(from ${base})\n`);
            }
            return l.state === 'expired' ? 3 : 0;
          } catch (err) {
            lastErr = err;
          }
        }
        ctx.stderr.write(`omflow license status: no booster answered (${urls.join(', ')}): ${(lastErr as Error)?.message}\n`);
        return 1;
      }
      default:
        ctx.stderr.write(`omflow license: unknown subcommand "${sub}"\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    const e = err as { code?: string; message: string };
    ctx.stderr.write(`omflow license ${sub}: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
    return 1;
  }
}
