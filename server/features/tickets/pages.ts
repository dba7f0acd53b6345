import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Database } from '../../../common/db/create-database.js';
import { isOmflowError } from '../../../common/errors.js';
import { traceParentOf } from '../../../common/protocol/trace-context.js';
import { fieldLabel, renderField } from '../../web/fields.js';
import { html, type Raw } from '../../web/html.js';
import { localeOf, t } from '../../web/i18n.js';
import { renderPage } from '../../web/layout.js';
import type { FormsStore } from '../forms/store.js';
import { requireUser, verifyCsrf } from '../users/guards.js';
import type { UsersStore } from '../users/store.js';
import { paging } from './routes.js';
import { atAutomaticStep, type TicketsService } from './service.js';
import type { TicketRow } from './store.js';

type Body = Record<string, string | undefined>;

function send(request: FastifyRequest, reply: FastifyReply, title: string, body: Raw, status = 200, notice?: string) {
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .send(renderPage({ title, user: request.user, locale: localeOf(request), body, csrfToken: request.session?.csrfToken, notice }));
}

const CREATED = '\u0000created';
const fmt = (d: Date | null) => (d ? `${d.toISOString().replace('T', ' ').slice(0, 16)} UTC` : '');

/** User pages: form catalogue (/), raise a ticket, my tasks, ticket list, ticket detail with actions and history. */
export async function ticketsPages(
  app: FastifyInstance,
  opts: { db: Database; tickets: TicketsService; forms: FormsStore; users: UsersStore; onCommitted: () => void },
): Promise<void> {
  const { db, tickets, forms, users, onCommitted } = opts;

  function table(l: ReturnType<typeof localeOf>, items: TicketRow[]): Raw {
    return html`<table><thead><tr><th>${t(l, 'ticket.number')}</th><th>${t(l, 'ticket.title')}</th><th>${t(l, 'ticket.state')}</th><th>${t(l, 'ticket.step')}</th><th>${t(l, 'ticket.created_at')}</th><th>${t(l, 'ticket.due')}</th></tr></thead><tbody>
      ${items.map((x) => html`<tr><td><a href="/tickets/${x.id}">${x.number}</a></td><td>${x.title}</td><td>${t(l, `state.${x.state}`)}</td><td>${x.currentStep}</td><td>${fmt(x.createdAt)}</td><td>${fmt(x.dueAt)}</td></tr>`)}
      </tbody></table>`;
  }

  app.get('/', { preHandler: [requireUser] }, async (request, reply) => {
    const l = localeOf(request);
    const list = await forms.list({ publishedOnly: true });
    const body = list.length
      ? html`<div class="card"><ul>${list.map((f) => html`<li><a href="/forms/${f.formKey}/new">${f.title}</a> <span class="muted">${f.description}</span></li>`)}</ul></div>`
      : html`<p class="muted">${t(l, 'catalogue.empty')}</p>`;
    return send(request, reply, t(l, 'catalogue.title'), body);
  });

  async function newTicketPage(request: FastifyRequest, reply: FastifyReply, values: Body = {}, errors: Record<string, string> = {}, status = 200) {
    const l = localeOf(request);
    const form = await forms.byKey((request.params as { formKey: string }).formKey);
    if (!form?.published) return send(request, reply, t(l, 'error.notFound'), html``, 404);
    const body = html`<div class="card">${form.description ? html`<p class="muted">${form.description}</p>` : ''}
      ${
        Object.keys(errors).length
          ? html`<p class="error" role="alert">${Object.keys(errors)
              .map((k) => fieldLabel(form.fields.find((f) => f.key === k) ?? { key: k, label: k, type: 'text' }, l))
              .join(', ')}</p>`
          : ''
      }
      <form method="post" action="/forms/${form.formKey}/new" novalidate><input type="hidden" name="csrf" value="${request.session?.csrfToken ?? ''}">
      ${form.fields.map((f) => renderField(f, values[f.key], errors[f.key], l))}
      <p><button class="primary" type="submit">${t(l, 'ticket.submit')}</button></p></form></div>`;
    return send(request, reply, t(l, 'ticket.new', { form: form.title }), body, status);
  }

  app.get('/forms/:formKey/new', { preHandler: [requireUser] }, async (request, reply) => newTicketPage(request, reply));
  app.post('/forms/:formKey/new', { preHandler: [requireUser, verifyCsrf] }, async (request, reply) => {
    const body = (request.body ?? {}) as Body;
    try {
      const created = await tickets.createAlone(
        db,
        (request.params as { formKey: string }).formKey,
        { data: body },
        request.user,
        traceParentOf(request.headers.traceparent),
      );
      if (atAutomaticStep(created)) onCommitted();
      return reply.redirect(`/tickets/${created.id}?created=1`, 303);
    } catch (err) {
      const fields = isOmflowError(err) ? (err.details as { fields?: Record<string, string> } | undefined)?.fields : undefined;
      if (!fields) throw err;
      return newTicketPage(request, reply, body, fields, 400);
    }
  });

  app.get('/tasks', { preHandler: [requireUser] }, async (request, reply) => {
    const l = localeOf(request);
    const { page, pageSize } = paging(request);
    const r = await tickets.tasks(request.user!, page, pageSize);
    return send(
      request,
      reply,
      t(l, 'tasks.title'),
      r.items.length ? html`<div class="card">${table(l, r.items)}</div>` : html`<p class="muted">${t(l, 'tasks.empty')}</p>`,
    );
  });

  app.get('/tickets', { preHandler: [requireUser] }, async (request, reply) => {
    const l = localeOf(request);
    const q = request.query as Body;
    const { page, pageSize } = paging(request);
    const r = await tickets.list(request.user!, { q: q.q || undefined, state: q.state || undefined, page, pageSize });
    const link = (p: number) => `/tickets?${new URLSearchParams({ q: q.q ?? '', state: q.state ?? '', page: String(p) })}`;
    const states = ['', 'open', 'running', 'completed', 'rejected', 'failed', 'cancelled'];
    const body = html`<form method="get" action="/tickets" class="card"><input name="q" value="${q.q ?? ''}" placeholder="REQ-000001">
      <select name="state">${states.map((s) => html`<option value="${s}" ${s === (q.state ?? '') ? 'selected' : ''}>${s ? t(l, `state.${s}`) : ''}</option>`)}</select>
      <button class="primary">${t(l, 'tickets.search')}</button></form>
      <div class="card">${table(l, r.items)}
      <p>${page > 1 ? html`<a href="${link(page - 1)}">${t(l, 'tickets.prev')}</a>` : ''} <span class="muted">${(page - 1) * pageSize + 1}–${Math.min(page * pageSize, r.total)} / ${r.total}</span>
      ${page * pageSize < r.total ? html`<a href="${link(page + 1)}">${t(l, 'tickets.next')}</a>` : ''}</p></div>`;
    return send(request, reply, t(l, 'tickets.title'), body);
  });

  async function detailPage(
    request: FastifyRequest,
    reply: FastifyReply,
    id: number,
    errors: Record<string, string> = {},
    values: Body = {},
    status = 200,
    notice?: string,
  ) {
    const l = localeOf(request);
    let d: Awaited<ReturnType<TicketsService['detail']>>;
    try {
      d = await tickets.detail(id, request.user!);
    } catch (err) {
      if (isOmflowError(err) && err.status === 404) return send(request, reply, t(l, 'error.notFound'), html``, 404);
      throw err;
    }
    const names = new Map((await users.list()).map((u) => [u.id, u.displayName]));
    const form = d.formKey ? await forms.byKey(d.formKey) : null;
    const labelOf = (k: string) => {
      const f = form?.fields.find((x) => x.key === k) ?? d.step?.fields.find((x) => x.key === k);
      return f ? fieldLabel(f, l) : k;
    };
    const csrf = request.session?.csrfToken ?? '';
    const actions = d.canAct
      ? html`<div class="card"><h2>${t(l, 'ticket.actions')}: ${d.step?.title}</h2>
        <form method="post" action="/tickets/${d.id}/actions" novalidate><input type="hidden" name="csrf" value="${csrf}">
        ${(d.step?.fields ?? []).map((f) => renderField(f, values[f.key], errors[f.key], l))}
        <label for="comment">${t(l, 'ticket.comment')}</label><textarea id="comment" name="comment" rows="2">${values.comment ?? ''}</textarea>
        <p><button class="primary" name="action" value="approve">${t(l, 'action.approve')}</button>
        <button name="action" value="reject">${t(l, 'action.reject')}</button>
        ${d.step?.canSendBack ? html`<button name="action" value="send_back">${t(l, 'action.send_back')}</button>` : ''}</p></form></div>`
      : html`<div class="card"><form method="post" action="/tickets/${d.id}/actions"><input type="hidden" name="csrf" value="${csrf}">
        <label for="comment">${t(l, 'ticket.comment')}</label><textarea id="comment" name="comment" rows="2"></textarea>
        <p><button name="action" value="comment">${t(l, 'action.comment')}</button></p></form></div>`;
    const body = html`<div class="card"><table><tbody>
      <tr><th>${t(l, 'ticket.number')}</th><td>${d.number}</td></tr><tr><th>${t(l, 'ticket.title')}</th><td>${d.title}</td></tr>
      <tr><th>${t(l, 'ticket.state')}</th><td>${t(l, `state.${d.state}`)}</td></tr><tr><th>${t(l, 'ticket.step')}</th><td>${d.step?.title ?? d.currentStep}</td></tr>
      <tr><th>${t(l, 'ticket.assignee')}</th><td>${d.assigneeUserId ? names.get(d.assigneeUserId) : d.assigneeGroupId ? `#group ${d.assigneeGroupId}` : ''}</td></tr>
      <tr><th>${t(l, 'ticket.created_at')}</th><td>${fmt(d.createdAt)}</td></tr><tr><th>${t(l, 'ticket.due')}</th><td>${fmt(d.dueAt)}</td></tr>
      </tbody></table></div>
      <div class="card"><h2>${t(l, 'ticket.data')}</h2><table><tbody>${Object.entries(d.data).map(([k, v]) => html`<tr><th>${labelOf(k)}</th><td><pre>${typeof v === 'object' ? JSON.stringify(v) : String(v)}</pre></td></tr>`)}</tbody></table></div>
      ${d.heldStep ? html`<p class="error" role="alert" id="held-step" data-step="${d.heldStep.stepId}">${t(l, `ticket.held.${d.heldStep.reason}`, { step: d.heldStep.stepKey, runs: d.heldStep.lostRuns })}</p>` : ''}
      ${actions}
      <div class="card"><h2>${t(l, 'ticket.comments')}</h2>${d.comments.map((c) => html`<p><strong>${c.userId ? names.get(c.userId) : ''}</strong> <span class="muted">${fmt(c.createdAt)}</span><br>${c.body}</p>`)}</div>
      <div class="card"><h2>${t(l, 'ticket.history')}</h2><table><tbody>
      ${d.history.map((h) => html`<tr><td class="muted">${fmt(h.createdAt)}</td><td>${h.step}</td><td>${h.action}</td><td>${h.actorUserId ? names.get(h.actorUserId) : h.nodeId}</td><td><pre>${h.input ? JSON.stringify(h.input) : ''}${h.output ? ` → ${JSON.stringify(h.output)}` : ''}</pre></td></tr>`)}
      </tbody></table></div>`;
    return send(request, reply, `${d.number} ${d.title}`, body, status, notice === CREATED ? t(l, 'ticket.created', { number: d.number }) : notice);
  }

  app.get('/tickets/:id', { preHandler: [requireUser] }, async (request, reply) => {
    const created = (request.query as Body).created;
    return detailPage(request, reply, Number((request.params as { id: string }).id), {}, {}, 200, created ? CREATED : undefined);
  });

  app.post('/tickets/:id/actions', { preHandler: [requireUser, verifyCsrf] }, async (request, reply) => {
    const id = Number((request.params as { id: string }).id);
    const body = (request.body ?? {}) as Body;
    const { action, comment, csrf: _csrf, ...data } = body;
    try {
      const acted = await db.transaction((trx) => tickets.act(trx, id, request.user!, { action, comment, data }, traceParentOf(request.headers.traceparent)));
      if (atAutomaticStep(acted)) onCommitted();
      return reply.redirect(`/tickets/${id}`, 303);
    } catch (err) {
      if (!isOmflowError(err) || err.status >= 500) throw err;
      const fields = (err.details as { fields?: Record<string, string> } | undefined)?.fields ?? {};
      return detailPage(request, reply, id, fields, body, err.status, Object.keys(fields).length ? undefined : err.message);
    }
  });
}
