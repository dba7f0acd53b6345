import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CommonErrors, isOmflowError, type OmflowError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { HEADER } from '../../common/protocol/headers.js';
import { traceIdOf } from '../../common/protocol/trace-context.js';
import { ServerErrors } from '../errors.js';
import { assetUrl } from '../web/assets.js';
import { esc } from '../web/html.js';

/** Seconds a client should wait before retrying while the database is unreachable. */
export const DB_RETRY_AFTER_S = 2;

/** Any thrown value → an OmflowError with a stable code (fastify's own errors included). */
export function toOmflowError(err: unknown): OmflowError {
  // The database, not the request, failed: one stable code for clients, whatever the driver said.
  if (CommonErrors.COMMON_ERR_DB_CONNECTION.is(err)) return ServerErrors.SERVER_ERR_DB_UNAVAILABLE(undefined, undefined, { cause: err });
  if (isOmflowError(err)) return err;
  const e = err as { code?: string; statusCode?: number; message?: string; validation?: unknown };
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return CommonErrors.COMMON_ERR_PAYLOAD_TOO_LARGE();
  if (e?.validation) return CommonErrors.COMMON_ERR_BAD_REQUEST(e.message, { validation: e.validation });
  if (typeof e?.code === 'string' && e.code.startsWith('FST_ERR_CTP')) return CommonErrors.COMMON_ERR_BAD_REQUEST(e.message);
  if (e?.statusCode && e.statusCode >= 400 && e.statusCode < 500) return CommonErrors.COMMON_ERR_BAD_REQUEST(e.message);
  return ServerErrors.SERVER_ERR_INTERNAL(undefined, undefined, { cause: err });
}

export function sendOmflowError(reply: FastifyReply, err: OmflowError): FastifyReply {
  if (err.code === ServerErrors.SERVER_ERR_DB_UNAVAILABLE.code) reply.header('retry-after', String(DB_RETRY_AFTER_S)).header(HEADER.dbUnavailable, '1');
  return reply.code(err.status).type('application/json; charset=utf-8').send(err.toJSON());
}

/** A browser asking for a page (not /api, accepts HTML): it gets a page, not JSON. */
function wantsPage(request: FastifyRequest): boolean {
  return !request.url.startsWith('/api/') && /text\/html/.test(String(request.headers.accept ?? ''));
}

/** The page a browser sees while the database is unreachable: what happened and when to retry. */
function sendDbUnavailablePage(reply: FastifyReply, err: OmflowError): FastifyReply {
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Temporarily unavailable</title><link rel="stylesheet" href="${assetUrl('app.css')}"></head>
<body class="plain">
<h1>Temporarily unavailable / 一時的に利用できません</h1>
<p>The database cannot be reached right now. Please try again in a few seconds (reload the page).</p>
<p>データベースに一時的に接続できません。数秒後にもう一度お試しください（ページを再読み込み）。</p>
<p><small>${esc(err.code)}</small></p>
</body></html>`;
  return reply.code(err.status).header('retry-after', String(DB_RETRY_AFTER_S)).header(HEADER.dbUnavailable, '1').type('text/html; charset=utf-8').send(body);
}

/** Errors are JSON {code, message, details}; COMMON_ERR_DB_* keep their codes. 5xx are logged. */
export function registerErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const e = toOmflowError(err);
    if (e.code === ServerErrors.SERVER_ERR_DB_UNAVAILABLE.code) {
      // The availability monitor logs the outage once; one line per refused request would flood.
      log.debug(
        { reqId: request.id, traceId: traceIdOf(request.headers.traceparent), url: request.url, code: e.code },
        'request refused: database unreachable',
      );
      return wantsPage(request) ? sendDbUnavailablePage(reply, e) : sendOmflowError(reply, e);
    }
    if (e.status >= 500) {
      const level = e.status === 503 ? 'warn' : 'error';
      log[level]({ err, reqId: request.id, traceId: traceIdOf(request.headers.traceparent), url: request.url, code: e.code }, 'request failed');
    }
    return sendOmflowError(reply, e);
  });
  app.setNotFoundHandler((request, reply) =>
    sendOmflowError(reply, ServerErrors.SERVER_ERR_NOT_FOUND(`No route ${request.method} ${request.url.split('?')[0]}`)),
  );
}
