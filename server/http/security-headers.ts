import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';

/** One year: what HSTS preload lists ask for and what helmet and Mozilla's guidelines use. */
const HSTS_MAX_AGE_S = 31_536_000;

/**
 * Security headers on every answer (pages, API, errors), through helmet. The pages load their
 * stylesheet and scripts from /assets/ (server/web/assets.ts), so the Content-Security-Policy
 * allows no inline script or style at all; no page may be framed (frame-ancestors 'none' and
 * X-Frame-Options DENY for old browsers); Referrer-Policy no-referrer; nosniff. HSTS only when
 * the user came over TLS: the booster terminates it and says so in X-Forwarded-Proto (a
 * client-sent one never passes the booster); over plain HTTP the header would be ignored, and
 * an operator who has not enabled TLS must not be locked out of a plain-HTTP admin page later.
 * No includeSubDomains: the booster's host name may share a domain with services it does not own.
 */
export async function registerSecurityHeaders(app: FastifyInstance, opts: { alwaysTls: boolean }): Promise<void> {
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        baseUri: ["'self'"],
        connectSrc: ["'self'"],
        fontSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        imgSrc: ["'self'", 'data:'],
        objectSrc: ["'none'"],
        scriptSrc: ["'self'"],
        scriptSrcAttr: ["'none'"],
        styleSrc: ["'self'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    // Set per request below.
    strictTransportSecurity: false,
  });
  app.addHook('onRequest', async (request, reply) => {
    if (opts.alwaysTls || request.headers['x-forwarded-proto'] === 'https') reply.header('strict-transport-security', `max-age=${HSTS_MAX_AGE_S}`);
  });
}
