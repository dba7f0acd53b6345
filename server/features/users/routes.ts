import type { FastifyInstance } from 'fastify';
import type { Database } from '../../../common/db/create-database.js';
import { ServerErrors } from '../../errors.js';
import { idempotentWrite } from '../../http/idempotency.js';
import { requireAdmin, requireUser, verifyCsrf } from './guards.js';
import type { UsersService } from './service.js';
import type { UsersStore } from './store.js';

type Body = Record<string, unknown>;

/** /api/auth/* and /api/users, /api/groups. */
export async function usersRoutes(app: FastifyInstance, opts: { db: Database; users: UsersService; store: UsersStore }): Promise<void> {
  const { db, users, store } = opts;

  app.post('/api/auth/login', async (request, reply) => {
    const b = (request.body ?? {}) as Body;
    const s = await users.login(String(b.username ?? ''), String(b.password ?? ''));
    return reply.send({ token: s.token, csrfToken: s.csrfToken, user: s.user, expiresInMs: s.ttlMs });
  });

  app.post('/api/auth/logout', { preHandler: [requireUser, verifyCsrf] }, async (request, reply) => {
    if (request.session && request.session.kind !== 'api-token') await users.logout(request.session.tokenHash);
    return reply.code(204).send();
  });

  app.get('/api/auth/me', { preHandler: [requireUser] }, async (request) => ({ user: request.user, groups: await store.groupIdsOf(request.user!.id) }));

  app.post('/api/auth/tokens', { preHandler: [requireUser, verifyCsrf] }, async (request, reply) => {
    const b = (request.body ?? {}) as Body;
    const t = await users.createApiToken(request.user!.id, String(b.name ?? 'api'), typeof b.expiresInDays === 'number' ? b.expiresInDays : undefined);
    return reply.code(201).send(t);
  });

  // Everyone may list users (user fields, assignees); e-mail addresses and account state only for admins.
  app.get('/api/users', { preHandler: [requireUser] }, async (request) => ({
    items: (await store.list()).map((u) => ({
      id: u.id,
      username: u.username,
      displayName: u.displayName,
      role: u.role,
      locale: u.locale,
      ...(request.user!.role === 'admin' ? { disabled: u.disabled, email: u.email } : {}),
    })),
  }));
  app.post('/api/users', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) =>
    idempotentWrite(db, request, reply, async (trx) => ({ status: 201, body: await users.createUser((request.body ?? {}) as Body, trx) })),
  );
  app.patch('/api/users/:id', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) =>
    idempotentWrite(db, request, reply, async (trx) => ({
      status: 200,
      body: await users.updateUser(Number((request.params as { id: string }).id), (request.body ?? {}) as Body, trx),
    })),
  );

  app.get('/api/groups', { preHandler: [requireUser] }, async () => ({ items: await store.groups() }));
  app.post('/api/groups', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const b = (request.body ?? {}) as Body;
    if (typeof b.name !== 'string' || !/^[\w .@-]{1,128}$/.test(b.name)) throw ServerErrors.SERVER_ERR_VALIDATION(undefined, { fields: { name: 'pattern' } });
    if (await store.groupByName(b.name)) throw ServerErrors.SERVER_ERR_VALIDATION(undefined, { fields: { name: 'unique' } });
    const id = await store.createGroup(b.name, typeof b.description === 'string' ? b.description : null);
    return reply.code(201).send({ id, name: b.name });
  });
  app.put('/api/groups/:id/members/:userId', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const p = request.params as { id: string; userId: string };
    await store.addMember(Number(p.id), Number(p.userId));
    return reply.code(204).send();
  });
  app.delete('/api/groups/:id/members/:userId', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const p = request.params as { id: string; userId: string };
    await store.removeMember(Number(p.id), Number(p.userId));
    return reply.code(204).send();
  });
}
