import type { AuthUser, Locale } from '../types.js';
import { assetUrl } from './assets.js';
import { esc, type Raw } from './html.js';
import { t } from './i18n.js';

export interface PageOptions {
  title: string;
  user: AuthUser | null;
  locale: Locale;
  /** Already-escaped HTML (build it with html`` from server/web/html.ts, or escape yourself). */
  body: string | Raw;
  /** The session's CSRF token; forms must post it as field `csrf` (the logout form uses it). */
  csrfToken?: string;
  /** Optional flash message shown above the body. */
  notice?: string;
}

/** The HTML shell of every page: nav (admin links for admins), sign-out form, body. */
export function renderPage(opts: PageOptions): string {
  const { user, locale } = opts;
  const nav: string[] = [];
  if (user) {
    nav.push(
      `<a href="/">${esc(t(locale, 'nav.catalogue'))}</a>`,
      `<a href="/tasks">${esc(t(locale, 'nav.tasks'))}</a>`,
      `<a href="/tickets">${esc(t(locale, 'nav.tickets'))}</a>`,
    );
    if (user.role === 'admin') {
      nav.push(
        `<a href="/admin/users">${esc(t(locale, 'nav.adminUsers'))}</a>`,
        `<a href="/admin/forms">${esc(t(locale, 'nav.adminForms'))}</a>`,
        `<a href="/admin/settings">${esc(t(locale, 'nav.adminSettings'))}</a>`,
        `<a href="/admin/cluster">${esc(t(locale, 'nav.adminCluster'))}</a>`,
        `<a href="/admin/patches">${esc(t(locale, 'nav.adminPatches'))}</a>`,
      );
    }
  }
  const account = user
    ? `<span>${esc(user.displayName)}</span><form method="post" action="/logout"><input type="hidden" name="csrf" value="${esc(opts.csrfToken ?? '')}"><button type="submit">${esc(t(locale, 'nav.logout'))}</button></form>`
    : '';
  return `<!doctype html>
<html lang="${locale}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(opts.title)} · ${esc(t(locale, 'app.name'))}</title><link rel="stylesheet" href="${assetUrl('app.css')}"><link rel="icon" href="data:,"></head>
<body><header><a class="brand" href="/">${esc(t(locale, 'app.name'))}</a>${nav.join('')}<span class="spacer"></span>${account}</header>
<main>${opts.notice ? `<div class="notice">${esc(opts.notice)}</div>` : ''}<h1>${esc(opts.title)}</h1>
${String(opts.body)}
</main></body></html>`;
}
