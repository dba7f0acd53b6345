import type { CookieSerializeOptions } from '@fastify/cookie';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isOmflowError } from '../../../common/errors.js';
import { ServerErrors } from '../../errors.js';
import { html } from '../../web/html.js';
import { localeOf, t } from '../../web/i18n.js';
import { renderPage } from '../../web/layout.js';
import { requireAdmin, requireUser, SESSION_COOKIE, verifyCsrf } from './guards.js';
import type { UsersService } from './service.js';
import type { UsersStore } from './store.js';

type Body = Record<string, string | undefined>;

function safeNext(next: unknown): string {
  // Same-site paths only: `//host` and `/\host` are off-site for browsers, and control characters are never legitimate.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
  return typeof next === 'string' && /^\/(?![/\\])/.test(next) && !/[\\\x00-\x1f]/.test(next) ? next : '/';
}

function page(request: FastifyRequest, reply: FastifyReply, title: string, body: ReturnType<typeof html> | string, status = 200, notice?: string) {
  const locale = localeOf(request);
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .send(renderPage({ title, user: request.user, locale, body, csrfToken: request.session?.csrfToken, notice }));
}

/** /login, /logout and /admin/users. */
export async function usersPages(app: FastifyInstance, opts: { users: UsersService; store: UsersStore; cookieSecure: boolean }): Promise<void> {
  const { users, store } = opts;
  // The booster sets X-Forwarded-Proto itself (a client-sent one never passes): https means the user came over TLS.
  const sessionCookie = (request: FastifyRequest): CookieSerializeOptions => ({
    path: '/',
    httpOnly: true,
    sameSite: 'lax',
    secure: opts.cookieSecure || request.headers['x-forwarded-proto'] === 'https',
  });

  function loginForm(request: FastifyRequest, next: string, error?: string) {
    const l = localeOf(request);
    return html`<div class="card"><form method="post" action="/login">
      ${error ? html`<p class="error" role="alert">${error}</p>` : ''}
      <input type="hidden" name="next" value="${next}">
      <label for="username">${t(l, 'login.username')}</label><input id="username" name="username" autocomplete="username" required autofocus>
      <label for="password">${t(l, 'login.password')}</label><input id="password" name="password" type="password" autocomplete="current-password" required>
      <p><button class="primary" type="submit">${t(l, 'login.submit')}</button></p></form></div>`;
  }

  app.get('/login', async (request, reply) =>
    page(request, reply, t(localeOf(request), 'login.title'), loginForm(request, safeNext((request.query as Body).next))),
  );

  app.post('/login', async (request, reply) => {
    const b = (request.body ?? {}) as Body;
    const next = safeNext(b.next);
    try {
      const s = await users.login(String(b.username ?? ''), String(b.password ?? ''));
      return reply.setCookie(SESSION_COOKIE, s.token, { ...sessionCookie(request), maxAge: Math.floor(s.ttlMs / 1000) }).redirect(next, 303);
    } catch (err) {
      if (!isOmflowError(err)) throw err;
      const l = localeOf(request);
      const msg = ServerErrors.SERVER_ERR_ACCOUNT_LOCKED.is(err) ? t(l, 'login.locked') : t(l, 'login.failed');
      return page(request, reply, t(l, 'login.title'), loginForm(request, next, msg), err.status);
    }
  });

  app.post('/logout', { preHandler: [requireUser, verifyCsrf] }, async (request, reply) => {
    if (request.session) await users.logout(request.session.tokenHash);
    return reply.clearCookie(SESSION_COOKIE, sessionCookie(request)).redirect('/login', 303);
  });

  async function adminUsersPage(request: FastifyRequest, reply: FastifyReply, notice?: string, error?: string, status = 200) {
    const l = localeOf(request);
    const [list, groups] = await Promise.all([store.list(), store.groups()]);
    const csrf = request.session?.csrfToken ?? '';
    const nameOf = (id: number) => list.find((u) => u.id === id)?.username ?? String(id);
    const body = html`
      ${error ? html`<p class="error" role="alert">${error}</p>` : ''}
      <div class="card"><table><thead><tr><th>ID</th><th>${t(l, 'field.username')}</th><th>${t(l, 'field.displayName')}</th><th>${t(l, 'field.role')}</th><th>${t(l, 'field.locale')}</th><th></th></tr></thead><tbody>
      ${list.map(
        (u) => html`<tr><td>${u.id}</td><td>${u.username}</td><td>${u.displayName}</td><td colspan="3"><form method="post" action="/admin/users" class="inline">
          <input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="op" value="update-user"><input type="hidden" name="id" value="${u.id}">
          <select name="role" aria-label="${t(l, 'field.role')}">${(['user', 'admin'] as const).map((r) => html`<option ${r === u.role ? 'selected' : ''}>${r}</option>`)}</select>
          <select name="locale" aria-label="${t(l, 'field.locale')}">${(['en', 'ja'] as const).map((r) => html`<option ${r === u.locale ? 'selected' : ''}>${r}</option>`)}</select>
          <label class="inline"><input type="checkbox" name="disabled" ${u.disabled ? 'checked' : ''}> ${t(l, 'admin.users.disabled')}</label>
          <label class="inline"><input type="checkbox" name="unlock"> ${t(l, 'admin.users.unlock')}</label>
          <input name="password" type="password" placeholder="${t(l, 'admin.users.newPassword')}" autocomplete="new-password">
          <button>${t(l, 'admin.saved.button')}</button></form></td></tr>`,
      )}
      </tbody></table></div>
      <div class="card"><h2>${t(l, 'admin.users.create')}</h2><form method="post" action="/admin/users">
        <input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="op" value="create-user">
        <label>${t(l, 'field.username')}</label><input name="username" required>
        <label>${t(l, 'field.displayName')}</label><input name="displayName" required>
        <label>${t(l, 'field.password')}</label><input name="password" type="password" required minlength="8">
        <label>${t(l, 'field.role')}</label><select name="role"><option>user</option><option>admin</option></select>
        <label>${t(l, 'field.locale')}</label><select name="locale"><option value="en">English</option><option value="ja">日本語</option></select>
        <p><button class="primary">${t(l, 'admin.users.create')}</button></p></form></div>
      <div class="card"><h2>${t(l, 'field.group')}</h2><table><tbody>
      ${groups.map((g) => html`<tr><td>${g.name}</td><td>${g.members.map(nameOf).join(', ')}</td></tr>`)}
      </tbody></table>
      <form method="post" action="/admin/users"><input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="op" value="create-group">
        <label>${t(l, 'field.name')}</label><input name="name" required> <button class="primary">${t(l, 'admin.groups.create')}</button></form>
      <form method="post" action="/admin/users"><input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="op" value="add-member">
        <label>${t(l, 'field.group')}</label><select name="group">${groups.map((g) => html`<option value="${g.id}">${g.name}</option>`)}</select>
        <label>${t(l, 'field.username')}</label><select name="user">${list.map((u) => html`<option value="${u.id}">${u.username}</option>`)}</select>
        <button class="primary">${t(l, 'admin.groups.addMember')}</button></form></div>`;
    return page(request, reply, t(l, 'admin.users.title'), body, status, notice);
  }

  app.get('/admin/users', { preHandler: [requireAdmin] }, async (request, reply) => adminUsersPage(request, reply));
  app.post('/admin/users', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const b = (request.body ?? {}) as Body;
    const l = localeOf(request);
    try {
      if (b.op === 'update-user')
        await users.updateUser(Number(b.id), {
          role: b.role,
          locale: b.locale,
          disabled: b.disabled === 'on',
          unlock: b.unlock === 'on',
          password: b.password ? b.password : undefined,
        });
      else if (b.op === 'create-user')
        await users.createUser({ username: b.username, displayName: b.displayName, password: b.password, role: b.role, locale: b.locale });
      else if (b.op === 'create-group') {
        if (!b.name || (await store.groupByName(b.name))) throw ServerErrors.SERVER_ERR_VALIDATION(undefined, { fields: { name: 'unique' } });
        await store.createGroup(b.name, null);
      } else if (b.op === 'add-member') await store.addMember(Number(b.group), Number(b.user));
      return adminUsersPage(request, reply, t(l, 'admin.saved'));
    } catch (err) {
      if (!isOmflowError(err)) throw err;
      const fields = (err.details as { fields?: Record<string, string> } | undefined)?.fields;
      const msg = fields
        ? Object.entries(fields)
            .map(([f, c]) => `${f}: ${t(l, `error.${c}`)}`)
            .join(' ')
        : err.message;
      return adminUsersPage(request, reply, undefined, msg, err.status);
    }
  });
}
