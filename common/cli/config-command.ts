import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { AnyArea, KeyDef } from '../config/define.js';
import { type ConfigSources, type LoadedConfig, loadConfig, parseEnvFile } from '../config/load.js';
import { createDatabase, type DatabaseConfig } from '../db/create-database.js';
import { getHelpers } from '../db/helpers/index.js';
import { migrationStatus } from '../db/migrate.js';
import { isOmflowError } from '../errors.js';
import { createClusterClient } from '../protocol/cluster-client.js';
import { BOOSTER_PATH } from '../protocol/headers.js';
import { type CliContext, parseFlags } from './context.js';

/**
 * `omflow config check [--config FILE] [--role booster|agent] [--quiet] [--json]`: validates a
 * configuration and what it points at, as `nginx -t` and `haproxy -c` do, and prints the
 * effective settings with secrets redacted. Exit 0: the service can start with it (warnings
 * name what is not ready yet: a database or a peer that does not answer, which a running
 * service rides through); 78 (EX_CONFIG): it cannot, and a restart would not help. install.sh
 * runs it before starting a service, the units before every start and reload.
 * The checks of each role live with their part (booster/cli/config-check.ts,
 * agent/config-check.ts) and are loaded by path, so common/ imports no part.
 */
export type CheckLevel = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  level: CheckLevel;
  /** What was checked: "TLS certificate", "database", "HA Booster http://b2:5169". */
  name: string;
  detail: string;
}

/** The checks of one role: the areas its command loads and what else to look at once they validate. */
export interface RoleCheck<A extends readonly AnyArea[] = readonly AnyArea[]> {
  areas: A;
  /** `env`: the command's environment (PATH, for the tools a check looks for). */
  run(config: LoadedConfig<A>, env: Record<string, string | undefined>): Promise<CheckResult[]>;
}

const ROLES = {
  booster: '../../booster/cli/config-check.js',
  agent: '../../agent/config-check.js',
} as const;
type Role = keyof typeof ROLES;

const HELP = `Usage: omflow config check [--config FILE] [--role booster|agent] [--quiet] [--json]

Validates a Booster or agent configuration and what it points at: every key, the TLS
certificate and key, the access-log file, trusted patch keys, the database (reachable, the
credentials accepted, migrated), the HA Booster or the Boosters answering with this cluster
secret, VIP and privileged-port prerequisites. Prints the effective settings, secrets redacted.

  --role    booster or agent (default: from the file name, booster.env / agent.env, else
            from the keys it sets)
  --quiet   print only warnings and failures (the units' ExecStartPre/ExecReload)
  --json    one JSON object: results, settings, ok

Exit status: 0 when the service can start with it (warnings included), 78 when it cannot.
`;

/** Which configuration a file is: `--role`, else its name, else the keys it sets. */
function roleOf(flag: string | true | undefined, file: string | undefined, env: Record<string, string | undefined>): Role | null {
  if (flag === 'booster' || flag === 'agent') return flag;
  if (flag !== undefined) return null;
  const name = file ? basename(file) : '';
  if (/agent/i.test(name)) return 'agent';
  if (/booster/i.test(name)) return 'booster';
  let keys = Object.keys(env);
  if (file && existsSync(file)) keys = [...keys, ...Object.keys(parseEnvFile(readFileSync(file, 'utf8')))];
  return keys.some((k) => /^OMFLOW_(AGENT|SERVER)_/.test(k)) ? 'agent' : 'booster';
}

export async function run(argv: string[], ctx: CliContext): Promise<number> {
  const { flags, positionals } = parseFlags(argv, ['help', 'quiet', 'json']);
  if (flags.help || positionals[0] !== 'check') {
    (flags.help ? ctx.stdout : ctx.stderr).write(HELP);
    return flags.help ? 0 : 2;
  }
  const role = roleOf(flags.role, ctx.configFile, ctx.env);
  if (!role) {
    ctx.stderr.write(`omflow config check: --role must be booster or agent\n`);
    return 2;
  }
  const mod = (await import(new URL(ROLES[role], import.meta.url).href).catch(() => null)) as { configCheck: RoleCheck } | null;
  if (!mod) {
    ctx.stderr.write(`omflow config check: the ${role} is not part of this installation\n`);
    return 2;
  }
  const sources: ConfigSources = { env: ctx.env, file: ctx.configFile };
  const results: CheckResult[] = [];
  let settings: SettingRow[] = [];
  try {
    const config = loadConfig(mod.configCheck.areas, sources);
    results.push({ level: 'ok', name: 'configuration', detail: `every key valid (${countKeys(mod.configCheck.areas)} keys)` });
    settings = effectiveSettings(mod.configCheck.areas, config, sources);
    results.push(...(await mod.configCheck.run(config, ctx.env)));
  } catch (err) {
    if (!isOmflowError(err) || err.code !== 'COMMON_ERR_CONFIG_INVALID') throw err;
    for (const p of (err.details as { problems: { key: string; message: string }[] }).problems)
      results.push({ level: 'fail', name: 'configuration', detail: `${p.key}: ${p.message}` });
  }
  const ok = !results.some((r) => r.level === 'fail');
  const warnings = results.filter((r) => r.level === 'warn').length;
  const where = ctx.configFile ?? 'the environment';
  if (flags.json) {
    ctx.stdout.write(`${JSON.stringify({ role, file: ctx.configFile ?? null, ok, results, settings }, null, 2)}\n`);
  } else {
    const shown = flags.quiet ? results.filter((r) => r.level !== 'ok') : results;
    if (!flags.quiet || shown.length > 0) ctx.stdout.write(`omflow config check: ${role} configuration from ${where}\n`);
    for (const r of shown) ctx.stdout.write(`  ${r.level.padEnd(4)}  ${r.name}: ${r.detail}\n`);
    if (!flags.quiet && settings.length > 0) {
      ctx.stdout.write('\nEffective settings (secrets redacted; # where each value comes from):\n');
      const width = Math.max(...settings.map((s) => s.key.length + s.value.length + 1));
      for (const s of settings) ctx.stdout.write(`  ${`${s.key}=${s.value}`.padEnd(width)}  # ${s.from}\n`);
    }
    if (!flags.quiet || !ok || warnings > 0)
      ctx.stdout.write(`\n${ok ? 'OK' : 'FAILED'}: ${where}${warnings ? ` (${warnings} warning${warnings > 1 ? 's' : ''})` : ''}\n`);
  }
  return ok ? 0 : 78;
}

function countKeys(areas: readonly AnyArea[]): number {
  return areas.reduce((n, a) => n + Object.keys(a.keys).length, 0);
}

export interface SettingRow {
  key: string;
  /** The value as the process uses it; a secret's is `[redacted]`. */
  value: string;
  from: 'default' | 'file' | 'environment';
}

/** Every key of the areas with its effective value (secrets redacted) and where it came from. */
export function effectiveSettings(areas: readonly AnyArea[], config: Record<string, object>, sources: ConfigSources): SettingRow[] {
  let file: Record<string, string> = {};
  if (sources.file) {
    try {
      file = parseEnvFile(readFileSync(sources.file, 'utf8'));
    } catch {
      // loadConfig reported it.
    }
  }
  const given = (names: string[], where: Record<string, unknown>) => names.some((n) => where[n] !== undefined || where[`${n}_FILE`] !== undefined);
  const rows: SettingRow[] = [];
  for (const area of areas) {
    const values = config[area.name] as Record<string, unknown>;
    for (const [field, def] of Object.entries(area.keys as Record<string, KeyDef<unknown>>)) {
      const names = [def.env, ...(def.aliases ?? [])];
      const v = values[field];
      const shown = v === undefined ? '' : def.secret ? redacted(String(v)) : Array.isArray(v) ? v.join(',') : String(v);
      const from = given(names, { ...sources.env, ...sources.overrides }) ? 'environment' : given(names, file) ? 'file' : 'default';
      rows.push({ key: def.env, value: shown, from });
    }
  }
  return rows;
}

/** A secret as the settings show it: a URL keeps all but its password (where it points matters), anything else is hidden. */
function redacted(v: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/]/i.test(v)) return '[redacted]';
  try {
    const u = new URL(v);
    if (!u.password) return v;
    u.password = 'redacted';
    return u.href.replace(':redacted@', ':[redacted]@');
  } catch {
    return '[redacted]';
  }
}

// ——— Checks both roles use ———

/** SQLSTATE / errno / ORA codes that mean "these credentials or this database name are wrong": a restart will not help. */
const REFUSED = new Set(['28P01', '28000', '3D000', '1045', '1044', '1049', '18456', '4060', 'ORA-01017', 'ORA-12514', 'ORA-01005']);

function codesOf(err: unknown): string[] {
  const out: string[] = [];
  for (let e = err as { code?: unknown; errno?: unknown; cause?: unknown; number?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    for (const c of [e.code, e.errno, e.number]) if (c !== undefined) out.push(String(c));
  }
  return out;
}

/** The database answers with these credentials, and is migrated. Unreachable is a warning (a service starts and waits for it); refused credentials fail. */
export async function checkDatabase(cfg: DatabaseConfig): Promise<CheckResult> {
  const db = createDatabase({ ...cfg, poolMin: 0, poolMax: 1, connectTimeoutMs: Math.min(cfg.connectTimeoutMs, 5000) });
  try {
    await db.knex.raw(getHelpers(db.knex).pingSql());
    const m = await migrationStatus(db.knex).catch(() => null);
    if (m && m.pending.length > 0)
      return {
        level: 'warn',
        name: 'database',
        detail: `reachable, but ${m.pending.length} migration(s) pending (${m.pending[0]}…): run \`omflow migrate latest\` (install.sh does)`,
      };
    return { level: 'ok', name: 'database', detail: `reachable and migrated${m ? ` (${m.completed.length} migrations)` : ''}` };
  } catch (err) {
    const cause = (err as { cause?: Error }).cause?.message;
    const message = [(err as Error).message?.split('\n')[0] ?? String(err), cause].filter(Boolean).join(': ');
    if (codesOf(err).some((c) => REFUSED.has(c))) return { level: 'fail', name: 'database', detail: `refused: ${message}` };
    return { level: 'warn', name: 'database', detail: `does not answer (${message}); the service starts anyway and waits for it` };
  } finally {
    await db.destroy().catch(() => {});
  }
}

/** A Booster answers /_booster/active, and accepts this cluster secret (a signed probe learns its role). */
export async function checkBooster(name: string, url: string, auth: { secret: string; nodeId: string }): Promise<CheckResult> {
  const client = createClusterClient({ secret: auth.secret, nodeId: auth.nodeId, timeoutMs: 2000 });
  const r = await client.call(url, 'GET', BOOSTER_PATH.active);
  const label = `${name} ${url}`;
  if (r.status === 0) return { level: 'warn', name: label, detail: `does not answer (${r.error ?? 'no answer'}); fine while it is not started yet` };
  const body = (r.body ?? {}) as { role?: string; epoch?: number };
  if (body.role === undefined)
    return {
      level: 'warn',
      name: label,
      detail: `answers ${r.status} but did not accept this cluster's signature: is OMFLOW_CLUSTER_SECRET the same on both?`,
    };
  return { level: 'ok', name: label, detail: `answers: ${body.role}, epoch ${body.epoch}` };
}

/** A file the service will write (an access log, a data directory): it exists writable, or its directory does. */
export function checkWritable(name: string, path: string, kind: 'file' | 'directory'): CheckResult {
  const exists = existsSync(path);
  const target = exists ? path : dirname(path);
  try {
    if ((exists ? kind === 'directory' : true) && !statSync(target).isDirectory()) throw new Error(`${target} is not a directory`);
    accessSync(target, constants.W_OK);
    return { level: 'ok', name, detail: existsSync(path) ? `${path} is writable` : `${path} will be created in a writable directory` };
  } catch (err) {
    return { level: 'fail', name, detail: `${path}: ${(err as Error).message} (the service runs as its own user: check owner and mode)` };
  }
}

/** The capabilities this process has (bit numbers from linux/capability.h), as the service started the same way would. */
export function effectiveCapabilities(): bigint {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? BigInt(`0x${m[1]}`) : 0n;
  } catch {
    return 0n;
  }
}

export const CAP = { NET_BIND_SERVICE: 10, NET_ADMIN: 12, NET_RAW: 13 } as const;

export function hasCapability(cap: number, caps = effectiveCapabilities()): boolean {
  return ((caps >> BigInt(cap)) & 1n) === 1n;
}
