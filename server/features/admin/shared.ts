import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Locale } from '../../types.js';
import { html, type Raw } from '../../web/html.js';
import { localeOf, t } from '../../web/i18n.js';
import { renderPage } from '../../web/layout.js';

export type Form = Record<string, string | undefined>;

export function sendPage(request: FastifyRequest, reply: FastifyReply, opts: { title: string; body: Raw | string; status?: number; notice?: string }) {
  return reply
    .code(opts.status ?? 200)
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(
      renderPage({
        title: opts.title,
        user: request.user,
        locale: localeOf(request),
        body: opts.body,
        csrfToken: request.session?.csrfToken,
        notice: opts.notice,
      }),
    );
}

/** The CSRF check for multipart forms, whose fields are read inside the handler (same rule as verifyCsrf). */
export function csrfMatches(request: FastifyRequest, given: string | undefined): boolean {
  const s = request.session;
  if (!s) return false;
  if (s.kind !== 'cookie') return true;
  const a = Buffer.from(String(request.headers['x-csrf-token'] ?? given ?? ''));
  const b = Buffer.from(s.csrfToken);
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}

export const csrfField = (request: FastifyRequest) => html`<input type="hidden" name="csrf" value="${request.session?.csrfToken ?? ''}">`;

export function fmtTime(value: string | Date | null | undefined): string {
  if (!value) return '-';
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function fmtBytes(n: number): string {
  return n >= 1024 * 1024 ? `${Math.round(n / 1024 / 1024)} MiB` : `${Math.round(n / 1024)} KiB`;
}

export function errorBox(message: string | undefined, code?: string): Raw | string {
  return message
    ? html`<p class="error" role="alert" id="error" data-code="${code ?? ''}">${message}${code ? html` <small>(<code>${code}</code>)</small>` : ''}</p>`
    : '';
}

export type { Locale };
export { html, localeOf, t };
