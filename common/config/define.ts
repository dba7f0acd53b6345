/**
 * Typed configuration keys. Each area (database, cluster, booster, ...) declares its keys once,
 * with type, default and a doc line; the loader validates every key of the areas a process
 * needs, reports all problems at once and returns a frozen object.
 */
export type Problem = { key: string; message: string };

export interface KeyDef<T> {
  readonly env: string;
  readonly doc: string;
  readonly default?: T;
  readonly required?: boolean;
  readonly secret?: boolean;
  /** A running process applies a change of this key in place on a reload (SIGHUP); any other change needs a restart. */
  readonly reload?: boolean;
  /** Other variable names accepted for the same key (e.g. OMFLOW's own BOOSTER_IP). */
  readonly aliases?: readonly string[];
  /** Human description of the type for the reference. */
  readonly type: string;
  /** How the reference shows a default computed at run time (e.g. the host name). */
  readonly defaultDoc?: string;
  parse(raw: string): { ok: true; value: T } | { ok: false; message: string };
}

type Opts<T> = {
  doc: string;
  default?: T;
  required?: boolean;
  secret?: boolean;
  reload?: boolean;
  aliases?: readonly string[];
  defaultDoc?: string;
};

function key<T>(env: string, type: string, opts: Opts<T>, parse: KeyDef<T>['parse']): KeyDef<T> {
  return { env, type, parse, ...opts };
}

export function str(env: string, opts: Opts<string> & { pattern?: RegExp }): KeyDef<string> {
  return key(env, 'string', opts, (raw) =>
    opts.pattern && !opts.pattern.test(raw) ? { ok: false, message: `does not match ${opts.pattern}` } : { ok: true, value: raw },
  );
}

export function optionalStr(env: string, opts: Opts<string | undefined>): KeyDef<string | undefined> {
  return key(env, 'string', opts, (raw) => ({ ok: true, value: raw === '' ? undefined : raw }));
}

export function int(env: string, opts: Opts<number> & { min?: number; max?: number }): KeyDef<number> {
  const range = `${opts.min ?? '-∞'}..${opts.max ?? '∞'}`;
  return key(env, `integer ${range}`, opts, (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) return { ok: false, message: `must be an integer, got "${raw}"` };
    const value = Number(raw);
    if (opts.min !== undefined && value < opts.min) return { ok: false, message: `must be >= ${opts.min}` };
    if (opts.max !== undefined && value > opts.max) return { ok: false, message: `must be <= ${opts.max}` };
    return { ok: true, value };
  });
}

/** An integer that may be left empty (undefined: the reader decides, as its doc says). */
export function optionalInt(env: string, opts: Opts<number | undefined> & { min?: number; max?: number }): KeyDef<number | undefined> {
  const inner = int(env, { doc: opts.doc, min: opts.min, max: opts.max });
  return key<number | undefined>(env, inner.type, opts, (raw) => (raw === '' ? { ok: true, value: undefined } : inner.parse(raw)));
}

export function port(env: string, opts: Opts<number>): KeyDef<number> {
  const def = int(env, { ...opts, min: 0, max: 65535 });
  return { ...def, type: 'port 0..65535' };
}

export function optionalPort(env: string, opts: Opts<number | undefined>): KeyDef<number | undefined> {
  const inner = port(env, { doc: opts.doc });
  return key(env, 'port 0..65535', opts, (raw) => (raw === '' ? { ok: true, value: undefined } : inner.parse(raw)));
}

export function bool(env: string, opts: Opts<boolean>): KeyDef<boolean> {
  return key(env, 'boolean (true|false)', opts, (raw) => {
    const v = raw.trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return { ok: true, value: true };
    if (['0', 'false', 'no', 'off'].includes(v)) return { ok: true, value: false };
    return { ok: false, message: `must be true or false, got "${raw}"` };
  });
}

export function oneOf<const V extends string>(env: string, values: readonly V[], opts: Opts<V>): KeyDef<V> {
  return key(env, values.join(' | '), opts, (raw) =>
    (values as readonly string[]).includes(raw) ? { ok: true, value: raw as V } : { ok: false, message: `must be one of ${values.join(', ')}, got "${raw}"` },
  );
}

/** Comma-separated list; empty entries are dropped. */
export function list(env: string, opts: Opts<readonly string[]>): KeyDef<readonly string[]> {
  return key(env, 'comma-separated list', opts, (raw) => ({
    ok: true,
    value: raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  }));
}

/** A secret with the name it is known by (who used it goes in the event log). */
export interface NamedToken {
  readonly name: string;
  readonly token: string;
}

/**
 * `name:token` entries separated by commas or new lines (a `_FILE` holds one per line). Names are
 * letters, digits and `._@-`, unique; tokens at least `minLength` characters.
 */
export function namedTokens(env: string, opts: Opts<readonly NamedToken[]> & { minLength: number }): KeyDef<readonly NamedToken[]> {
  return key(env, 'name:token list', opts, (raw) => {
    const out: NamedToken[] = [];
    for (const entry of raw
      .split(/[,\n]/)
      .map((s) => s.trim())
      .filter(Boolean)) {
      const i = entry.indexOf(':');
      const name = i > 0 ? entry.slice(0, i) : '';
      const token = entry.slice(i + 1);
      if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name))
        return { ok: false, message: 'each entry must be name:token, the name made of letters, digits and ._@- (at most 64)' };
      if (token.length < opts.minLength) return { ok: false, message: `the token of "${name}" must be at least ${opts.minLength} characters` };
      if (out.some((t) => t.name === name)) return { ok: false, message: `the name "${name}" is given twice` };
      out.push({ name, token });
    }
    return { ok: true, value: out };
  });
}

export function httpUrl(env: string, opts: Opts<string | undefined>): KeyDef<string | undefined> {
  return key(env, 'http(s) URL', opts, (raw) => {
    if (raw === '') return { ok: true, value: undefined };
    try {
      const u = new URL(raw);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') return { ok: false, message: 'must be an http:// or https:// URL' };
      return { ok: true, value: raw.replace(/\/+$/, '') };
    } catch {
      return { ok: false, message: `is not a URL: "${raw}"` };
    }
  });
}

export type AreaValues<D> = { readonly [K in keyof D]: D[K] extends KeyDef<infer T> ? T : never };

/**
 * Keys of any types. `any`, not `unknown`: `check` takes the values, which makes an area
 * invariant in its keys, so a concrete area would not be assignable to an `unknown` one.
 */
// biome-ignore lint/suspicious/noExplicitAny: see above.
export type AnyKeys = Record<string, KeyDef<any>>;
/** An area of any name and keys (what the loader and the reference take). */
// biome-ignore lint/suspicious/noExplicitAny: as for AnyKeys.
export type AnyArea = Area<string, any>;

export interface Area<N extends string = string, D extends AnyKeys = AnyKeys> {
  readonly name: N;
  readonly title: string;
  readonly keys: D;
  /** Cross-key rules, run after every key parsed (e.g. URL or separate keys). */
  readonly check?: (values: AreaValues<D>, report: (key: string, message: string) => void) => void;
}

export function defineArea<const N extends string, D extends AnyKeys>(area: Area<N, D>): Area<N, D> {
  return area;
}
