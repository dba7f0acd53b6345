import type { Knex } from 'knex';
import { getHelpers } from '../../../common/db/helpers/index.js';
import type { DbRecord } from '../../../common/db/row.js';
import type { AuthUser, Locale, Role } from '../../types.js';

export interface UserRow extends AuthUser {
  email: string | null;
  disabled: boolean;
  passwordHash: string;
}

export interface GroupRow {
  id: number;
  name: string;
  description: string | null;
}

function toUser(knex: Knex, r: DbRecord): UserRow {
  const h = getHelpers(knex);
  return {
    id: Number(r.id),
    username: r.username,
    displayName: r.display_name,
    email: r.email ?? null,
    role: (r.role === 'admin' ? 'admin' : 'user') as Role,
    locale: (r.locale === 'ja' ? 'ja' : 'en') as Locale,
    disabled: h.toBool(r.disabled),
    passwordHash: r.password_hash,
  };
}

/** SQL of users, groups, sessions and API tokens. Times are the database's clock. */
export function createUsersStore(knex: Knex) {
  const h = getHelpers(knex);
  return {
    async byUsername(username: string, db: Knex | Knex.Transaction = knex): Promise<UserRow | null> {
      const r = await db('users').where({ username }).first();
      return r ? toUser(knex, r) : null;
    },
    async byId(id: number, db: Knex | Knex.Transaction = knex): Promise<UserRow | null> {
      const r = await db('users').where({ id }).first();
      return r ? toUser(knex, r) : null;
    },
    async list(): Promise<UserRow[]> {
      return (await knex('users').orderBy('username')).map((r) => toUser(knex, r));
    },
    async create(
      u: { username: string; displayName: string; email?: string | null; passwordHash: string; role: Role; locale: Locale },
      db: Knex | Knex.Transaction = knex,
    ): Promise<number> {
      return h.insertReturningId(db, 'users', {
        username: u.username,
        display_name: u.displayName,
        email: u.email ?? null,
        password_hash: u.passwordHash,
        role: u.role,
        locale: u.locale,
        disabled: false,
        failed_logins: 0,
        created_at: h.now(),
        updated_at: h.now(),
      });
    },
    async update(
      id: number,
      patch: Partial<{ displayName: string; email: string | null; passwordHash: string; role: Role; locale: Locale; disabled: boolean; unlock: boolean }>,
      db: Knex | Knex.Transaction = knex,
    ): Promise<boolean> {
      const row: Record<string, unknown> = { updated_at: h.now() };
      if (patch.displayName !== undefined) row.display_name = patch.displayName;
      if (patch.email !== undefined) row.email = patch.email;
      if (patch.passwordHash !== undefined) row.password_hash = patch.passwordHash;
      if (patch.role !== undefined) row.role = patch.role;
      if (patch.locale !== undefined) row.locale = patch.locale;
      if (patch.disabled !== undefined) row.disabled = patch.disabled;
      if (patch.unlock) Object.assign(row, { failed_logins: 0, locked_until: null });
      return Number(await db('users').where({ id }).update(row)) === 1;
    },
    /**
     * Counts one login attempt before its password is checked, in one transaction (the row lock
     * orders parallel attempts): 'locked' when the account is locked; 'last' when this attempt is
     * the `maxFailures`-th in a row, which locks the account for `lockMs` already (a right
     * password lifts it through recordSuccess); 'counted' otherwise. So parallel guesses get no
     * more tries than sequential ones, and an attempt cut short still counts.
     */
    async beginAttempt(id: number, maxFailures: number, lockMs: number): Promise<'locked' | 'last' | 'counted'> {
      const max = Math.max(1, maxFailures);
      return knex.transaction(async (trx) => {
        const counted = await trx('users')
          .where({ id })
          .andWhere((q) => q.whereNull('locked_until').orWhere('locked_until', '<=', h.now()))
          .update({ failed_logins: knex.raw('failed_logins + 1') });
        if (Number(counted) !== 1) return 'locked';
        const locked = await trx('users')
          .where({ id })
          .andWhere('failed_logins', '>=', max)
          .update({ failed_logins: 0, locked_until: h.nowPlusMs(lockMs) });
        return Number(locked) === 1 ? 'last' : 'counted';
      });
    },
    async recordSuccess(id: number): Promise<void> {
      await knex('users').where({ id }).update({ failed_logins: 0, locked_until: null });
    },

    // ---- groups ----
    async groups(): Promise<Array<GroupRow & { members: number[] }>> {
      const groups = await knex('user_groups').orderBy('name');
      const members = await knex('group_members').select('group_id', 'user_id');
      return groups.map((g) => ({
        id: Number(g.id),
        name: g.name,
        description: g.description ?? null,
        members: members.filter((m) => Number(m.group_id) === Number(g.id)).map((m) => Number(m.user_id)),
      }));
    },
    async groupByName(name: string, db: Knex | Knex.Transaction = knex): Promise<GroupRow | null> {
      const g = await db('user_groups').where({ name }).first();
      return g ? { id: Number(g.id), name: g.name, description: g.description ?? null } : null;
    },
    async createGroup(name: string, description: string | null): Promise<number> {
      return h.insertReturningId(knex, 'user_groups', { name, description, created_at: h.now() });
    },
    async addMember(groupId: number, userId: number): Promise<void> {
      const exists = await knex('group_members').where({ group_id: groupId, user_id: userId }).first();
      if (!exists) await knex('group_members').insert({ group_id: groupId, user_id: userId });
    },
    async removeMember(groupId: number, userId: number): Promise<void> {
      await knex('group_members').where({ group_id: groupId, user_id: userId }).delete();
    },
    async groupIdsOf(userId: number): Promise<number[]> {
      return (await knex('group_members').where({ user_id: userId }).select('group_id')).map((r) => Number(r.group_id));
    },

    // ---- sessions (sessions.token_hash = sha256(token)) ----
    async createSession(s: { tokenHash: string; userId: number; csrfToken: string; ttlMs: number }): Promise<void> {
      await knex('sessions').insert({
        token_hash: s.tokenHash,
        user_id: s.userId,
        csrf_token: s.csrfToken,
        created_at: h.now(),
        last_seen_at: h.now(),
        expires_at: h.nowPlusMs(s.ttlMs),
      });
    },
    /** A live session and its user in one round trip (every authenticated request does this). */
    async findSession(tokenHash: string): Promise<{ user: UserRow; csrfToken: string; expiresAt: Date | null } | null> {
      const r = await knex('sessions as s')
        .join('users as u', 'u.id', 's.user_id')
        .where('s.token_hash', tokenHash)
        .andWhere('s.expires_at', '>', h.now())
        .first('u.*', 's.csrf_token as s_csrf_token', 's.expires_at as s_expires_at');
      return r ? { user: toUser(knex, r), csrfToken: r.s_csrf_token, expiresAt: h.toDate(r.s_expires_at) } : null;
    },
    /** Sliding expiry. */
    async touchSession(tokenHash: string, ttlMs: number): Promise<void> {
      await knex('sessions')
        .where({ token_hash: tokenHash })
        .update({ last_seen_at: h.now(), expires_at: h.nowPlusMs(ttlMs) });
    },
    async deleteSession(tokenHash: string): Promise<void> {
      await knex('sessions').where({ token_hash: tokenHash }).delete();
    },
    async deleteExpiredSessions(): Promise<number> {
      return Number(await knex('sessions').where('expires_at', '<', h.now()).delete());
    },

    // ---- API tokens ----
    async createApiToken(t: { userId: number; name: string; tokenHash: string; ttlMs?: number }): Promise<number> {
      return h.insertReturningId(knex, 'api_tokens', {
        user_id: t.userId,
        name: t.name,
        token_hash: t.tokenHash,
        created_at: h.now(),
        expires_at: t.ttlMs ? h.nowPlusMs(t.ttlMs) : null,
      });
    },
    async findApiToken(tokenHash: string): Promise<{ id: number; userId: number; expiresAt: Date | null } | null> {
      const r = await knex('api_tokens')
        .where({ token_hash: tokenHash })
        .andWhere((q) => q.whereNull('expires_at').orWhere('expires_at', '>', h.now()))
        .first('id', 'user_id', 'expires_at');
      return r ? { id: Number(r.id), userId: Number(r.user_id), expiresAt: h.toDate(r.expires_at) } : null;
    },
  };
}

export type UsersStore = ReturnType<typeof createUsersStore>;
