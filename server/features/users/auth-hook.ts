import type { FastifyInstance } from 'fastify';
import { ASSETS_PREFIX } from '../../web/assets.js';
import { SESSION_COOKIE } from './guards.js';
import type { UsersService } from './service.js';

/** Sets request.user / request.session from `Authorization: Bearer` or the session cookie (anonymous otherwise). */
export function registerAuthHook(app: FastifyInstance, users: UsersService): void {
  app.decorateRequest('user', null);
  app.decorateRequest('session', null);
  app.addHook('preHandler', async (request) => {
    if (request.url.startsWith('/_internal/') || request.url === '/healthz' || request.url === '/readyz' || request.url.startsWith(ASSETS_PREFIX)) return;
    const auth = request.headers.authorization;
    let found = null;
    if (typeof auth === 'string' && /^Bearer\s+/i.test(auth)) found = await users.authenticate(auth.replace(/^Bearer\s+/i, '').trim(), 'bearer');
    else {
      const token = request.cookies[SESSION_COOKIE];
      if (token) found = await users.authenticate(token, 'cookie');
    }
    if (found) {
      request.user = found.user;
      request.session = found.session;
    }
  });
}
