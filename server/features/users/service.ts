import type { Knex } from 'knex';
import { ServerErrors } from '../../errors.js';
import type { AuthSession, AuthUser, Locale, Role } from '../../types.js';
import { SETTING, type SettingsStore } from '../settings/store.js';
import { DUMMY_HASH, hashPassword, newToken, sha256Hex, verifyPassword } from './passwords.js';
import type { UserRow, UsersStore } from './store.js';

const USERNAME = /^[A-Za-z0-9._@-]{1,128}$/;

export function publicUser(u: UserRow | AuthUser): AuthUser {
  return { id: u.id, username: u.username, displayName: u.displayName, role: u.role, locale: u.locale };
}

export function createUsersService(deps: { store: UsersStore; settings: SettingsStore }) {
  const { store, settings } = deps;
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
    /** Checks the password with lockout (settings: login.lockout.failures / .minutes); returns a new session. */
    async login(username: string, password: string): Promise<{ token: string; csrfToken: string; user: AuthUser; ttlMs: number }> {
      const user = typeof username === 'string' ? await store.byUsername(username) : null;
      if (!user || user.disabled) {
        await verifyPassword(String(password ?? ''), DUMMY_HASH);
        throw ServerErrors.SERVER_ERR_LOGIN_FAILED();
      }
      if (await store.isLocked(user.id)) throw ServerErrors.SERVER_ERR_ACCOUNT_LOCKED();
      if (!(await verifyPassword(String(password ?? ''), user.passwordHash))) {
        const failures = await settings.getNumber(SETTING.lockoutFailures);
        const minutes = await settings.getNumber(SETTING.lockoutMinutes);
        const lockedNow = await store.recordFailure(user.id, failures, minutes * 60_000);
        throw lockedNow ? ServerErrors.SERVER_ERR_ACCOUNT_LOCKED() : ServerErrors.SERVER_ERR_LOGIN_FAILED();
      }
      await store.recordSuccess(user.id);
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
          passwordHash: await hashPassword(String(input.password)),
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
          passwordHash: typeof input.password === 'string' ? await hashPassword(input.password) : undefined,
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
        await store.update(existing.id, { passwordHash: await hashPassword(password), role: 'admin', disabled: false, unlock: true });
        return publicUser((await store.byId(existing.id))!);
      }
      return this.createUser({ username, displayName: 'Administrator', password, role: 'admin' });
    },
  };
}

export type UsersService = ReturnType<typeof createUsersService>;
