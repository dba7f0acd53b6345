import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Database } from '../../../common/db/create-database.js';
import { isOmflowError } from '../../../common/errors.js';
import { renderField } from '../../web/fields.js';
import { html, type Raw } from '../../web/html.js';
import { localeOf, t } from '../../web/i18n.js';
import { renderPage } from '../../web/layout.js';
import { checkFieldDefs, type FieldDef } from '../forms/fields.js';
import type { FormsService } from '../forms/service.js';
import type { FormsStore } from '../forms/store.js';
import { requireAdmin, verifyCsrf } from '../users/guards.js';
import type { FlowsService } from './service.js';
import type { FlowsStore } from './store.js';

type Body = Record<string, string | undefined>;

/**
 * /admin/forms: flows and forms as JSON documents. Deploying validates everything and adds a
 * flow version; a form can be previewed (rendered as users will see it) before it is saved.
 */
export async function formsPages(
  app: FastifyInstance,
  opts: { db: Database; forms: FormsService; flows: FlowsService; formsStore: FormsStore; flowsStore: FlowsStore },
): Promise<void> {
  const { db, forms, flows, formsStore, flowsStore } = opts;

  async function page(
    request: FastifyRequest,
    reply: FastifyReply,
    state: { flowJson?: string; formJson?: string; problems?: string[]; notice?: string; preview?: Raw; status?: number } = {},
  ) {
    const l = localeOf(request);
    const q = request.query as Body;
    const [flowList, formList] = await Promise.all([flowsStore.list(), formsStore.list()]);
    const keyOf = new Map(flowList.map((f) => [f.id, f.flowKey]));
    let flowJson = state.flowJson;
    if (flowJson === undefined && q.flow) {
      const f = await flowsStore.byKey(q.flow);
      const v = f ? await flowsStore.latestVersion(f.id) : null;
      if (f)
        flowJson = JSON.stringify({ flowKey: f.flowKey, name: f.name, ticketPrefix: f.ticketPrefix, slaHours: f.slaHours, definition: v?.definition }, null, 2);
    }
    let formJson = state.formJson;
    if (formJson === undefined && q.form) {
      const f = await formsStore.byKey(q.form);
      if (f)
        formJson = JSON.stringify(
          {
            formKey: f.formKey,
            title: f.title,
            description: f.description,
            flowKey: f.flowId ? keyOf.get(f.flowId) : null,
            published: f.published,
            fields: f.fields,
          },
          null,
          2,
        );
    }
    const csrf = request.session?.csrfToken ?? '';
    const body = html`
      ${state.problems?.length ? html`<div class="card error" role="alert"><ul>${state.problems.map((p) => html`<li>${p}</li>`)}</ul></div>` : ''}
      <div class="card"><table><thead><tr><th>flow</th><th>name</th><th>prefix</th><th>SLA h</th><th>version</th></tr></thead><tbody>
      ${flowList.map((f) => html`<tr><td><a href="/admin/forms?flow=${f.flowKey}">${f.flowKey}</a></td><td>${f.name}</td><td>${f.ticketPrefix}</td><td>${f.slaHours}</td><td>${f.latestVersion}</td></tr>`)}
      </tbody></table>
      <table><thead><tr><th>form</th><th>title</th><th>flow</th><th>published</th></tr></thead><tbody>
      ${formList.map((f) => html`<tr><td><a href="/admin/forms?form=${f.formKey}">${f.formKey}</a></td><td>${f.title}</td><td>${f.flowId ? keyOf.get(f.flowId) : ''}</td><td>${f.published ? '✓' : ''}</td></tr>`)}
      </tbody></table></div>
      <div class="card"><h2>${t(l, 'admin.forms.deployFlow')}</h2><form method="post" action="/admin/forms"><input type="hidden" name="csrf" value="${csrf}">
        <textarea class="code" name="json" spellcheck="false">${flowJson ?? '{\n  "flowKey": "",\n  "name": "",\n  "ticketPrefix": "",\n  "slaHours": 24,\n  "definition": { "start": "review", "steps": { "review": { "type": "form", "next": "done" }, "done": { "type": "end" } } }\n}'}</textarea>
        <p><button class="primary" name="op" value="deploy-flow">${t(l, 'admin.forms.deployFlow')}</button> <button name="op" value="validate-flow">validate</button></p></form></div>
      <div class="card"><h2>${t(l, 'admin.forms.saveForm')}</h2><form method="post" action="/admin/forms"><input type="hidden" name="csrf" value="${csrf}">
        <textarea class="code" name="json" spellcheck="false">${formJson ?? '{\n  "formKey": "",\n  "title": "",\n  "flowKey": "",\n  "fields": [ { "key": "title", "label": "Title", "type": "text", "required": true } ]\n}'}</textarea>
        <p><button class="primary" name="op" value="save-form">${t(l, 'admin.forms.saveForm')}</button> <button name="op" value="preview-form">preview</button></p></form>
        ${state.preview ? html`<div class="card"><h3>preview</h3>${state.preview}</div>` : ''}</div>`;
    return reply
      .code(state.status ?? 200)
      .type('text/html; charset=utf-8')
      .send(renderPage({ title: t(l, 'admin.forms.title'), user: request.user, locale: l, body, csrfToken: csrf, notice: state.notice }));
  }

  app.get('/admin/forms', { preHandler: [requireAdmin] }, async (request, reply) => page(request, reply));

  app.post('/admin/forms', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const b = (request.body ?? {}) as Body;
    const text = b.json ?? '';
    const isFlow = b.op === 'deploy-flow' || b.op === 'validate-flow';
    const keep = isFlow ? { flowJson: text } : { formJson: text };
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      return page(request, reply, { ...keep, problems: [`JSON: ${(err as Error).message}`], status: 400 });
    }
    const l = localeOf(request);
    try {
      if (b.op === 'deploy-flow') {
        const r = await db.transaction((trx) => flows.deploy(trx, doc, request.user!.id));
        return page(request, reply, { ...keep, notice: `${t(l, 'admin.saved')} ${r.flowKey} v${r.version}` });
      }
      if (b.op === 'validate-flow') {
        await db.transaction(async (trx) => {
          await flows.deploy(trx, doc, request.user!.id);
          throw new Rollback();
        });
      }
      if (b.op === 'preview-form') {
        const problems = checkFieldDefs(doc.fields);
        if (problems.length) return page(request, reply, { ...keep, problems, status: 400 });
        return page(request, reply, { ...keep, preview: html`${(doc.fields as FieldDef[]).map((f) => renderField(f, undefined, undefined, l))}` });
      }
      if (b.op === 'save-form') {
        const r = await db.transaction((trx) => forms.save(trx, doc));
        return page(request, reply, { ...keep, notice: `${t(l, 'admin.saved')} ${r.formKey}` });
      }
      return page(request, reply, keep);
    } catch (err) {
      if (err instanceof Rollback) return page(request, reply, { ...keep, notice: 'valid' });
      if (!isOmflowError(err) || err.status >= 500) throw err;
      const problems = (err.details as { problems?: string[] } | undefined)?.problems ?? [err.message];
      return page(request, reply, { ...keep, problems, status: err.status });
    }
  });
}

class Rollback extends Error {}
