import type { Knex } from 'knex';
import { getHelpers } from '../../../common/db/helpers/index.js';

/**
 * Well-known keys of the `settings` table (the admin System settings page edits them).
 * Values are stored as text; readers apply the defaults below when a key is absent.
 */
export const SETTING = {
  logLevel: 'log.level',
  lockoutFailures: 'login.lockout.failures',
  lockoutMinutes: 'login.lockout.minutes',
  sessionTimeoutMinutes: 'session.timeout.minutes',
} as const;

export const SETTING_DEFAULTS: Record<string, string> = {
  [SETTING.logLevel]: 'info',
  [SETTING.lockoutFailures]: '5',
  [SETTING.lockoutMinutes]: '15',
  [SETTING.sessionTimeoutMinutes]: '480',
};

export interface SettingsStore {
  /** Stored value, or the default of a well-known key, or undefined. Cached for a few seconds. */
  get(key: string): Promise<string | undefined>;
  getNumber(key: string, fallback?: number): Promise<number>;
  set(key: string, value: string, actor?: string | null): Promise<void>;
  all(): Promise<Record<string, string>>;
  /** Forget the cache (after a write on another server, it expires by itself within ttlMs). */
  invalidate(): void;
}

/** Settings shared by every server through the database, cached per process for `ttlMs`. */
export function createSettingsStore(knex: Knex, opts: { ttlMs?: number } = {}): SettingsStore {
  const ttlMs = opts.ttlMs ?? 5000;
  let cache: { at: number; values: Record<string, string> } | null = null;

  async function load(): Promise<Record<string, string>> {
    if (cache && Date.now() - cache.at < ttlMs) return cache.values;
    const rows = await knex('settings').select('setting_key', 'setting_value');
    const values: Record<string, string> = {};
    for (const r of rows) values[r.setting_key] = String(r.setting_value);
    cache = { at: Date.now(), values };
    return values;
  }

  const store: SettingsStore = {
    async get(key) {
      const values = await load();
      return values[key] ?? SETTING_DEFAULTS[key];
    },
    async getNumber(key, fallback) {
      const raw = await store.get(key);
      const n = raw === undefined ? NaN : Number(raw);
      if (Number.isFinite(n)) return n;
      return fallback ?? Number(SETTING_DEFAULTS[key] ?? 0);
    },
    async set(key, value, actor = null) {
      const h = getHelpers(knex);
      const n = await knex('settings').where({ setting_key: key }).update({ setting_value: value, updated_by: actor, updated_at: h.now() });
      if (Number(n) === 0) {
        try {
          await knex('settings').insert({ setting_key: key, setting_value: value, updated_by: actor, updated_at: h.now() });
        } catch {
          // Another server inserted it at the same moment: last write wins.
          await knex('settings').where({ setting_key: key }).update({ setting_value: value, updated_by: actor, updated_at: h.now() });
        }
      }
      cache = null;
    },
    async all() {
      return { ...SETTING_DEFAULTS, ...(await load()) };
    },
    invalidate() {
      cache = null;
    },
  };
  return store;
}
