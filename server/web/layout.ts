import type { AuthUser, Locale } from '../types.js';
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

const CSS = `
body{font-family:system-ui,-apple-system,"Hiragino Sans","Noto Sans JP",sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none}header a:hover{text-decoration:underline}
header .brand{font-weight:700;margin-right:1rem}header .spacer{flex:1}
header form{display:inline;margin:0}header button{background:none;border:1px solid #fff6;color:#fff;border-radius:4px;cursor:pointer}
main{max-width:1100px;margin:1.5rem auto;padding:0 1rem}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border-bottom:1px solid #e3e6ea;padding:.4rem .6rem;text-align:left;vertical-align:top}
.card{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:1rem;margin-bottom:1rem}
label{display:block;margin:.6rem 0 .2rem;font-weight:600}input,select,textarea{font:inherit;padding:.35rem;min-width:18rem;max-width:100%}
textarea.code{font-family:ui-monospace,monospace;width:100%;min-height:18rem}
.error{color:#b00020}.notice{background:#e7f4e4;border:1px solid #9bc59b;padding:.5rem 1rem;border-radius:4px;margin-bottom:1rem}
.muted{color:#667}button.primary{background:#1f3a5f;color:#fff;border:0;padding:.45rem 1rem;border-radius:4px;cursor:pointer}
pre{white-space:pre-wrap;word-break:break-word;margin:0}
form.inline input,form.inline select{min-width:0}label.inline{display:inline;font-weight:normal;margin:0 .3rem}
`;

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
<title>${esc(opts.title)} · ${esc(t(locale, 'app.name'))}</title><style>${CSS}</style></head>
<body><header><a class="brand" href="/">${esc(t(locale, 'app.name'))}</a>${nav.join('')}<span class="spacer"></span>${account}</header>
<main>${opts.notice ? `<div class="notice">${esc(opts.notice)}</div>` : ''}<h1>${esc(opts.title)}</h1>
${String(opts.body)}
</main></body></html>`;
}
