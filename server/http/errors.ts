import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { CommonErrors, isOmflowError, type OmflowError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { ServerErrors } from '../errors.js';

/** Any thrown value → an OmflowError with a stable code (fastify's own errors included). */
export function toOmflowError(err: unknown): OmflowError {
  if (isOmflowError(err)) return err;
  const e = err as { code?: string; statusCode?: number; message?: string; validation?: unknown };
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return CommonErrors.COMMON_ERR_PAYLOAD_TOO_LARGE();
  if (e?.validation) return CommonErrors.COMMON_ERR_BAD_REQUEST(e.message, { validation: e.validation });
  if (typeof e?.code === 'string' && e.code.startsWith('FST_ERR_CTP')) return CommonErrors.COMMON_ERR_BAD_REQUEST(e.message);
  if (e?.statusCode && e.statusCode >= 400 && e.statusCode < 500) return CommonErrors.COMMON_ERR_BAD_REQUEST(e.message);
  return ServerErrors.SERVER_ERR_INTERNAL(undefined, undefined, { cause: err });
}

export function sendOmflowError(reply: FastifyReply, err: OmflowError): FastifyReply {
  return reply.code(err.status).type('application/json; charset=utf-8').send(err.toJSON());
}

/** Errors are JSON {code, message, details}; COMMON_ERR_DB_* keep their codes. 5xx are logged. */
export function registerErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const e = toOmflowError(err);
    if (e.status >= 500) {
      const level = e.status === 503 ? 'warn' : 'error';
      log[level]({ err, reqId: request.id, url: request.url, code: e.code }, 'request failed');
    }
    return sendOmflowError(reply, e);
  });
  app.setNotFoundHandler((request, reply) =>
    sendOmflowError(reply, ServerErrors.SERVER_ERR_NOT_FOUND(`No route ${request.method} ${request.url.split('?')[0]}`)),
  );
}
