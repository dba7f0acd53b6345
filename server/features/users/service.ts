import type { Knex } from 'knex';
import { ServerErrors } from '../../errors.js';
import type { AuthSession, AuthUser, Locale, Role } from '../../types.js';
import { SETTING, type SettingsStore } from '../settings/store.js';
import { createPasswordHasher, dummyHash, newToken, type PasswordHasher, sha256Hex } from './passwords.js';
import type { UserRow, UsersStore } from './store.js';

const USERNAME = /^[A-Za-z0-9._@-]{1,128}$/;

export function publicUser(u: UserRow | AuthUser): AuthUser {
  return { id: u.id, username: u.username, displayName: u.displayName, role: u.role, locale: u.locale };
}

/** Concurrent password hashes when the caller gives no hasher (seed, tools); the app server's comes from its config. */
const DEFAULT_HASHES = 2;

export function createUsersService(deps: { store: UsersStore; settings: SettingsStore; passwords?: PasswordHasher }) {
  const { store, settings } = deps;
  const passwords = deps.passwords ?? createPasswordHasher({ concurrency: DEFAULT_HASHES });
  const DUMMY = dummyHash();
  // Sliding expiry is written at most once a minute per session per process.
  const touched = new Map<string, number>();

  const sessionTtlMs = async () => Math.max(1, await settings.getNumber(SETTING.sessionTimeoutMinutes)) * 60_000;

  function checkNewUser(input: Record<string, unknown>, partial = false): Record<string, string> {
    const fields: Record<string, string> = {};
    if (!partial || input.username !== undefined) if (typeof input.username !== 'string' || !USERNAME.test(input.username)) fields.username = 'pattern';
    if (!partial || input.displayName !== undefined)
      if (typeof input.displayName !== 'string' || !input.displayName.trim() || input.displayName.length > 255) fields.displayName = 'required';
    if (!partial || input.password !== undefined) if (typeof input.password !== 'string' || input.password.length < 8) fields.password = 'minLength';
    if (input.role !== undefined && input.role !== 'admin' && input.role !== 'user') fields.role = 'option';
    if (input.locale !== undefined && input.locale !== 'en' && input.locale !== 'ja') fields.locale = 'option';
    return fields;
  }

  return {
    /**
     * Checks the password with lockout (settings: login.lockout.failures / .minutes); returns a
     * new session. The attempt is counted before the password is checked, so parallel guesses
     * get no more tries than sequential ones; a hash made with older parameters is replaced.
     */
    async login(username: string, password: string): Promise<{ token: string; csrfToken: string; user: AuthUser; ttlMs: number }> {
      const user = typeof username === 'string' ? await store.byUsername(username) : null;
      const given = String(password ?? '');
      if (!user || user.disabled) {
        await passwords.verify(given, DUMMY);
        throw ServerErrors.SERVER_ERR_LOGIN_FAILED();
      }
      const failures = await settings.getNumber(SETTING.lockoutFailures);
      const minutes = await settings.getNumber(SETTING.lockoutMinutes);
      const attempt = await store.beginAttempt(user.id, failures, minutes * 60_000);
      if (attempt === 'locked') throw ServerErrors.SERVER_ERR_ACCOUNT_LOCKED();
      if (!(await passwords.verify(given, user.passwordHash)))
        throw attempt === 'last' ? ServerErrors.SERVER_ERR_ACCOUNT_LOCKED() : ServerErrors.SERVER_ERR_LOGIN_FAILED();
      await store.recordSuccess(user.id);
      if (passwords.needsRehash(user.passwordHash)) await store.update(user.id, { passwordHash: await passwords.hash(given) });
      const token = newToken();
      const csrfToken = newToken();
      const ttlMs = await sessionTtlMs();
      await store.createSession({ tokenHash: sha256Hex(token), userId: user.id, csrfToken, ttlMs });
      return { token, csrfToken, user: publicUser(user), ttlMs };
    },

    async logout(tokenHash: string): Promise<void> {
      await store.deleteSession(tokenHash);
      touched.delete(tokenHash);
    },

    /** Resolves a session or API token to the user; null when unknown, expired or disabled. */
    async authenticate(token: string, via: 'cookie' | 'bearer'): Promise<{ user: AuthUser; session: AuthSession } | null> {
      if (!token || token.length > 200) return null;
      const tokenHash = sha256Hex(token);
      const s = await store.findSession(tokenHash);
      if (s) {
        const user = s.user;
        if (user.disabled) return null;
        const last = touched.get(tokenHash) ?? 0;
        if (Date.now() - last > 60_000) {
          touched.set(tokenHash, Date.now());
          if (touched.size > 10_000) touched.clear();
          await store.touchSession(tokenHash, await sessionTtlMs());
        }
        return { user: publicUser(user), session: { kind: via, tokenHash, csrfToken: s.csrfToken, expiresAt: s.expiresAt } };
      }
      if (via !== 'bearer') return null;
      const api = await store.findApiToken(tokenHash);
      if (!api) return null;
      const user = await store.byId(api.userId);
      if (!user || user.disabled) return null;
      return { user: publicUser(user), session: { kind: 'api-token', tokenHash, csrfToken: '', expiresAt: api.expiresAt } };
    },

    async createApiToken(userId: number, name: string, days?: number): Promise<{ id: number; token: string }> {
      const token = `omf_${newToken()}`;
      const id = await store.createApiToken({
        userId,
        name: name.slice(0, 128) || 'token',
        tokenHash: sha256Hex(token),
        ttlMs: days ? days * 86_400_000 : undefined,
      });
      return { id, token };
    },

    async createUser(input: Record<string, unknown>, db?: Knex.Transaction): Promise<AuthUser> {
      const fields = checkNewUser(input);
      if (Object.keys(fields).length) throw ServerErrors.SERVER_ERR_VALIDATION(undefined, { fields });
      if (await store.byUsername(String(input.username), db)) throw ServerErrors.SERVER_ERR_VALIDATION(undefined, { fields: { username: 'unique' } });
      const id = await store.create(
        {
          username: String(input.username),
          displayName: String(input.displayName).trim(),
          email: typeof input.email === 'string' && input.email ? input.email : null,
          passwordHash: await passwords.hash(String(input.password)),
          role: (input.role as Role) ?? 'user',
          locale: (input.locale as Locale) ?? 'en',
        },
        db,
      );
      return publicUser((await store.byId(id, db))!);
    },

    async updateUser(id: number, input: Record<string, unknown>, db?: Knex.Transaction): Promise<AuthUser> {
      const fields = checkNewUser(input, true);
      delete fields.username;
      if (Object.keys(fields).length) throw ServerErrors.SERVER_ERR_VALIDATION(undefined, { fields });
      const ok = await store.update(
        id,
        {
          displayName: typeof input.displayName === 'string' ? input.displayName.trim() : undefined,
          email: typeof input.email === 'string' ? input.email : undefined,
          role: input.role as Role | undefined,
          locale: input.locale as Locale | undefined,
          disabled: typeof input.disabled === 'boolean' ? input.disabled : undefined,
          unlock: input.unlock === true,
          passwordHash: typeof input.password === 'string' ? await passwords.hash(input.password) : undefined,
        },
        db,
      );
      if (!ok) throw ServerErrors.SERVER_ERR_NOT_FOUND('No such user');
      return publicUser((await store.byId(id, db))!);
    },

    /** Idempotent: creates or resets the admin account (seed). */
    async ensureAdmin(username: string, password: string): Promise<AuthUser> {
      const existing = await store.byUsername(username);
      if (existing) {
        await store.update(existing.id, { passwordHash: await passwords.hash(password), role: 'admin', disabled: false, unlock: true });
        return publicUser((await store.byId(existing.id))!);
      }
      return this.createUser({ username, displayName: 'Administrator', password, role: 'admin' });
    },
  };
}

export type UsersService = ReturnType<typeof createUsersService>;
