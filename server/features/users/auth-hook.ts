import type { FastifyInstance } from 'fastify';
import { SESSION_COOKIE } from './guards.js';
import type { UsersService } from './service.js';

export function parseCookies(header: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!header) return out;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const name = part.slice(0, i).trim();
    try {
      out[name] = decodeURIComponent(part.slice(i + 1).trim());
    } catch {
      out[name] = part.slice(i + 1).trim();
    }
  }
  return out;
}

/** Sets request.user / request.session from `Authorization: Bearer` or the session cookie (anonymous otherwise). */
export function registerAuthHook(app: FastifyInstance, users: UsersService): void {
  app.decorateRequest('user', null);
  app.decorateRequest('session', null);
  app.addHook('preHandler', async (request) => {
    if (request.url.startsWith('/_internal/') || request.url === '/healthz' || request.url === '/readyz') return;
    const auth = request.headers.authorization;
    let found = null;
    if (typeof auth === 'string' && /^Bearer\s+/i.test(auth)) found = await users.authenticate(auth.replace(/^Bearer\s+/i, '').trim(), 'bearer');
    else {
      const token = parseCookies(request.headers.cookie)[SESSION_COOKIE];
      if (token) found = await users.authenticate(token, 'cookie');
    }
    if (found) {
      request.user = found.user;
      request.session = found.session;
    }
  });
}
