import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { OmflowError } from '../../../common/errors.js';
import { ServerErrors } from '../../errors.js';
import { localeOf, t } from '../../web/i18n.js';
import { renderPage } from '../../web/layout.js';

/**
 * preHandlers for routes. API paths (/api/...) answer JSON errors {code, message};
 * pages redirect to /login?next=... (or show a 403 page to a signed-in non-admin).
 * Usage: `app.get('/admin/x', { preHandler: [requireAdmin] }, handler)`;
 * state-changing cookie requests add verifyCsrf: `{ preHandler: [requireUser, verifyCsrf] }`.
 */
export const SESSION_COOKIE = 'omflow_session';

const isApi = (request: FastifyRequest) => request.url.startsWith('/api/');

function sendError(reply: FastifyReply, err: OmflowError): FastifyReply {
  return reply.code(err.status).type('application/json').send(err.toJSON());
}

export async function requireUser(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (request.user) return;
  if (isApi(request)) {
    await sendError(reply, ServerErrors.SERVER_ERR_UNAUTHENTICATED());
    return;
  }
  const next = request.method === 'GET' ? `?next=${encodeURIComponent(request.url)}` : '';
  await reply.redirect(`/login${next}`, 303);
}

export async function requireAdmin(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (!request.user) return requireUser(request, reply);
  if (request.user.role === 'admin') return;
  if (isApi(request)) {
    await sendError(reply, ServerErrors.SERVER_ERR_FORBIDDEN());
    return;
  }
  const locale = localeOf(request);
  await reply
    .code(403)
    .type('text/html; charset=utf-8')
    .send(renderPage({ title: t(locale, 'error.forbidden'), user: request.user, locale, body: '', csrfToken: request.session?.csrfToken }));
}

/** Cookie sessions must echo the session's CSRF token (form field `csrf` or header x-csrf-token). Bearer callers are exempt. */
export async function verifyCsrf(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const s = request.session;
  if (s?.kind !== 'cookie' || request.method === 'GET' || request.method === 'HEAD' || request.method === 'OPTIONS') return;
  const body = request.body as Record<string, unknown> | undefined;
  const given = String(request.headers['x-csrf-token'] ?? (body && typeof body === 'object' ? (body.csrf ?? '') : ''));
  const a = Buffer.from(given);
  const b = Buffer.from(s.csrfToken);
  if (a.length === b.length && a.length > 0 && timingSafeEqual(a, b)) return;
  await sendError(reply, ServerErrors.SERVER_ERR_CSRF());
}
