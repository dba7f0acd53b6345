import { readFileSync } from 'node:fs';
import { CommonErrors } from '../errors.js';
import type { AnyArea, AreaValues, KeyDef, Problem } from './define.js';

export interface ConfigSources {
  /** Usually process.env; only entry points pass it. */
  env: Record<string, string | undefined>;
  /** Path of a KEY=VALUE file (systemd EnvironmentFile syntax). */
  file?: string;
  /** Highest precedence, used by tests and the dev cluster. */
  overrides?: Record<string, string | number | boolean | undefined>;
}

export type LoadedConfig<A extends readonly AnyArea[]> = {
  readonly [I in A[number] as I['name']]: AreaValues<I['keys']>;
};

/** Parses systemd EnvironmentFile syntax: KEY=VALUE lines, # comments, optional quotes. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let value = m[2];
    if ((value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'"))) {
      value = value.slice(1, -1);
      if (m[2].startsWith('"')) value = value.replace(/\\(["\\$`])/g, '$1');
    }
    out[m[1]] = value;
  }
  return out;
}

/**
 * Loads and validates the given areas: defaults < file < environment < overrides.
 * `KEY_FILE` reads a secret from a file. Throws COMMON_ERR_CONFIG_INVALID listing every
 * problem; returns a deeply frozen object.
 */
export function loadConfig<const A extends readonly AnyArea[]>(areas: A, sources: ConfigSources): LoadedConfig<A> {
  const problems: Problem[] = [];
  let fileValues: Record<string, string> = {};
  if (sources.file) {
    try {
      fileValues = parseEnvFile(readFileSync(sources.file, 'utf8'));
    } catch (err) {
      problems.push({ key: '--config', message: `cannot read ${sources.file}: ${(err as Error).message}` });
    }
  }
  const merged: Record<string, string | undefined> = { ...fileValues };
  for (const [k, v] of Object.entries(sources.env)) if (v !== undefined) merged[k] = v;
  for (const [k, v] of Object.entries(sources.overrides ?? {})) if (v !== undefined) merged[k] = String(v);

  const lookup = (def: KeyDef<unknown>): { name: string; raw: string } | undefined => {
    for (const name of [def.env, ...(def.aliases ?? [])]) {
      const fileRef = merged[`${name}_FILE`];
      if (merged[name] !== undefined) return { name, raw: merged[name]! };
      if (fileRef) {
        try {
          return { name, raw: readFileSync(fileRef, 'utf8').replace(/\r?\n$/, '') };
        } catch (err) {
          problems.push({ key: `${name}_FILE`, message: `cannot read ${fileRef}: ${(err as Error).message}` });
          return undefined;
        }
      }
    }
    return undefined;
  };

  const result: Record<string, Record<string, unknown>> = {};
  for (const area of areas) {
    const values: Record<string, unknown> = {};
    for (const [field, def] of Object.entries(area.keys as Record<string, KeyDef<unknown>>)) {
      const found = lookup(def);
      if (found === undefined || (found.raw === '' && def.required)) {
        if (def.required) problems.push({ key: def.env, message: 'is required' });
        values[field] = def.default;
        continue;
      }
      const parsed = def.parse(found.raw);
      if (parsed.ok) values[field] = parsed.value;
      else problems.push({ key: found.name, message: parsed.message });
    }
    area.check?.(values as never, (key, message) => problems.push({ key, message }));
    result[area.name] = Object.freeze(values);
  }
  if (problems.length > 0) {
    const lines = problems.map((p) => `  - ${p.key}: ${p.message}`).join('\n');
    throw CommonErrors.COMMON_ERR_CONFIG_INVALID(`Configuration is invalid:\n${lines}`, { problems });
  }
  return Object.freeze(result) as LoadedConfig<A>;
}

/**
 * What a running process needs to read its configuration again on a reload (SIGHUP): the
 * sources it started with, and the file as it was then. Under systemd the unit's
 * EnvironmentFile= copies the file into the environment at start, where it would win over the
 * file read again; a variable whose value is the file's value at start is taken for the file's,
 * so the file as it is now decides. A variable set some other way (a drop-in's Environment=,
 * a shell) still wins, as at start.
 */
export interface ConfigOrigin {
  sources: ConfigSources;
  fileAtStart: Record<string, string>;
}

export function configOrigin(sources: ConfigSources): ConfigOrigin {
  let fileAtStart: Record<string, string> = {};
  if (sources.file) {
    try {
      fileAtStart = parseEnvFile(readFileSync(sources.file, 'utf8'));
    } catch {
      // loadConfig reports an unreadable file.
    }
  }
  return { sources, fileAtStart };
}

/** Loads the areas again from `origin` (throws COMMON_ERR_CONFIG_INVALID, like loadConfig). */
export function reloadConfig<const A extends readonly AnyArea[]>(areas: A, origin: ConfigOrigin): LoadedConfig<A> {
  const env: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(origin.sources.env)) if (v !== undefined && origin.fileAtStart[k] !== v) env[k] = v;
  return loadConfig(areas, { ...origin.sources, env });
}

/** Keys whose value differs between two loads of the same areas, split by whether a running process applies them in place. */
export interface ConfigChanges {
  /** Variable names (never values: some are secrets) of changed keys marked `reload`. */
  inPlace: string[];
  /** Changed keys that take effect at the next start only. */
  needsRestart: string[];
}

export function diffConfig(areas: readonly AnyArea[], before: Record<string, object | undefined>, after: Record<string, object | undefined>): ConfigChanges {
  const out: ConfigChanges = { inPlace: [], needsRestart: [] };
  for (const area of areas) {
    const a = before[area.name] as Record<string, unknown> | undefined;
    const b = after[area.name] as Record<string, unknown> | undefined;
    if (!a || !b) continue;
    for (const [field, def] of Object.entries(area.keys as Record<string, KeyDef<unknown>>)) {
      if (sameValue(a[field], b[field])) continue;
      (def.reload ? out.inPlace : out.needsRestart).push(def.env);
    }
  }
  return out;
}

/** `target` takes `next`'s value of every key of `area` marked `reload`, except those in `except` (field names). */
export function assignReloadable(area: AnyArea, target: Record<string, unknown>, next: object, except: readonly string[] = []): void {
  for (const [field, def] of Object.entries(area.keys as Record<string, KeyDef<unknown>>))
    if (def.reload && !except.includes(field)) target[field] = (next as Record<string, unknown>)[field];
}

function sameValue(x: unknown, y: unknown): boolean {
  if (Array.isArray(x) && Array.isArray(y)) return x.length === y.length && x.every((v, i) => v === y[i]);
  return x === y;
}
