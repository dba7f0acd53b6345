import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LOG_LEVELS } from '../../../common/config/areas/cluster.js';
import {
  applyUpload,
  auditLicense,
  type LicenseEvaluation,
  type LicenseNotice,
  type LicensePreview,
  type LicenseVerifier,
  listLicenseAudit,
  loadLicenseEvaluation,
} from '../../../common/license/index.js';
import type { ServerDeps } from '../../types.js';
import { scriptTag } from '../../web/assets.js';
import { SETTING } from '../settings/store.js';
import { requireAdmin, verifyCsrf } from '../users/guards.js';
import type { BoosterClient } from './booster-client.js';
import { csrfField, csrfMatches, errorBox, type Form, fmtBytes, fmtTime, html, type Locale, localeOf, sendPage, t } from './shared.js';

interface Ctx {
  deps: ServerDeps;
  verifier: LicenseVerifier;
  boosters: BoosterClient;
  licenseBytes: number;
}

export function stateLine(l: Locale, e: LicenseEvaluation, started: boolean): string {
  switch (e.state) {
    case 'trial':
      return started ? t(l, 'admin.license.trial', { days: e.daysLeft ?? 0 }) : t(l, 'admin.license.trialNotStarted');
    case 'licensed':
      return e.expiresAt
        ? t(l, 'admin.license.licensed', { customer: e.customer ?? '', until: fmtTime(e.expiresAt) })
        : t(l, 'admin.license.licensedForever', { customer: e.customer ?? '' });
    case 'grace':
      return t(l, 'admin.license.grace', { customer: e.customer ?? '', until: fmtTime(e.expiresAt), days: e.daysLeft ?? 0 });
    case 'expired':
      return t(l, 'admin.license.expired');
  }
}

function noticeLine(l: Locale, n: LicenseNotice): string {
  switch (n.kind) {
    case 'clock_backwards':
      return t(l, 'admin.license.warn.clock_backwards', { seconds: Math.round(n.behindMs / 1000) });
    case 'expires_soon':
    case 'grace':
    case 'trial_ending':
      return t(l, `admin.license.warn.${n.kind}`, { days: n.daysLeft });
    case 'server_limit':
      return t(l, 'admin.license.warn.server_limit', { used: n.used, licensed: n.licensed });
    case 'stored_license_invalid':
      return t(l, 'admin.license.warn.stored_license_invalid', { code: n.code });
    case 'license_required':
      return t(l, 'admin.license.warn.license_required');
  }
}

function previewTable(l: Locale, p: LicensePreview) {
  return html`<table class="license-preview" id="license-preview"><tbody>
    <tr><th>${t(l, 'admin.license.customer')}</th><td data-field="customer">${p.customer}</td></tr>
    <tr><th>${t(l, 'admin.license.licenseId')}</th><td>${p.licenseId}</td></tr>
    <tr><th>${t(l, 'admin.license.notBefore')}</th><td>${fmtTime(p.notBefore)}</td></tr>
    <tr><th>${t(l, 'admin.license.expires')}</th><td data-field="expires">${p.expiresAt ? fmtTime(p.expiresAt) : t(l, 'admin.license.never')}</td></tr>
    <tr><th>${t(l, 'admin.license.graceDays')}</th><td>${p.graceDays}</td></tr>
    <tr><th>${t(l, 'admin.license.maxServers')}</th><td data-field="maxServers">${p.maxServers ?? t(l, 'admin.license.unlimited')}</td></tr>
    <tr><th>${t(l, 'admin.license.boundTo')}</th><td>${p.clusterId ?? t(l, 'admin.license.anyCluster')}</td></tr>
    <tr><th>${t(l, 'admin.license.features')}</th><td>${p.features.join(', ') || '-'}</td></tr>
  </tbody></table>`;
}

export async function settingsPage(app: FastifyInstance, ctx: Ctx): Promise<void> {
  const { deps, verifier, boosters } = ctx;

  async function render(
    request: FastifyRequest,
    reply: FastifyReply,
    extra: { notice?: string; licenseError?: { message: string; code: string }; systemError?: string; status?: number } = {},
  ) {
    const l = localeOf(request);
    const [evaluation, audit, used, values] = await Promise.all([
      loadLicenseEvaluation(deps.db, verifier, { readOnly: true, usedServers: 0 }),
      listLicenseAudit(deps.db, 10),
      deps.db.knex('servers').count({ n: '*' }).first(),
      deps.settings.all(),
    ]);
    const usedServers = Number((used as { n?: unknown } | undefined)?.n ?? 0);
    const e = { ...evaluation, servers: { licensed: evaluation.maxServers, used: usedServers } };
    const notices = evaluation.notices.slice();
    if (e.maxServers !== null && usedServers > e.maxServers)
      notices.push({ kind: 'server_limit', code: 'BOOSTER_ERR_LICENSE_SERVER_LIMIT', licensed: e.maxServers, used: usedServers });
    const started = evaluation.trialStartedAt !== null;
    const body = html`
      <section class="card" id="license">
        <h2>${t(l, 'admin.license.title')}</h2>
        ${errorBox(extra.licenseError?.message, extra.licenseError?.code)}
        <table><tbody>
          <tr><th>${t(l, 'admin.license.state')}</th><td><strong id="license-state" data-state="${e.state}">${stateLine(l, e, started)}</strong>
            ${e.state === 'expired' ? html`<p class="error">${t(l, 'admin.license.expiredHelp')}</p>` : ''}</td></tr>
          <tr><th>${t(l, 'admin.license.clusterId')}</th><td><code id="cluster-id">${e.clusterId ?? '-'}</code>
            ${e.clusterId ? html` <button type="button" id="copy-cluster-id" data-copy="cluster-id" data-label="${t(l, 'admin.license.copy')}" data-done="${t(l, 'admin.license.copied')}">${t(l, 'admin.license.copy')}</button>` : ''}</td></tr>
          <tr><th>${t(l, 'admin.license.servers')}</th><td>${t(l, 'admin.license.serversValue', { used: usedServers, licensed: e.maxServers ?? t(l, 'admin.license.unlimited') })}</td></tr>
          ${started ? html`<tr><th>${t(l, 'admin.license.trialStarted')}</th><td>${fmtTime(e.trialStartedAt)}</td></tr>` : ''}
        </tbody></table>
        ${notices.length ? html`<ul class="warnings" id="license-warnings">${notices.map((n) => html`<li class="error" data-kind="${n.kind}">${noticeLine(l, n)}</li>`)}</ul>` : ''}
        <form method="post" action="/admin/settings/license/upload" enctype="multipart/form-data" id="license-upload">
          ${csrfField(request)}
          <label for="license-file">${t(l, 'admin.license.file')} <small class="muted">(≤ ${fmtBytes(ctx.licenseBytes)})</small></label>
          <input type="file" id="license-file" name="license" accept=".omflowlic,.lic,.json,application/json" required>
          <p><button class="primary" type="submit" id="license-upload-button">${t(l, 'admin.license.upload')}</button></p>
        </form>
        <details><summary>${t(l, 'admin.license.audit')}</summary>
          <table id="license-audit"><thead><tr><th>${t(l, 'admin.license.auditWhen')}</th><th>${t(l, 'admin.license.auditWho')}</th><th>${t(l, 'admin.license.auditResult')}</th><th>${t(l, 'admin.license.customer')}</th></tr></thead><tbody>
          ${audit.map((a) => html`<tr><td>${fmtTime(a.createdAt)}</td><td>${a.actor ?? '-'}</td><td><code>${a.resultCode}</code></td><td>${a.customer ?? ''}</td></tr>`)}
          </tbody></table></details>
      </section>
      <section class="card" id="system">
        <h2>${t(l, 'admin.system.title')}</h2>
        ${errorBox(extra.systemError)}
        <form method="post" action="/admin/settings" id="system-settings">
          ${csrfField(request)}
          <label for="logLevel">${t(l, 'admin.system.logLevel')}</label>
          <select id="logLevel" name="logLevel">${LOG_LEVELS.map((v) => html`<option value="${v}" ${values[SETTING.logLevel] === v ? 'selected' : ''}>${v}</option>`)}</select>
          <label for="lockoutFailures">${t(l, 'admin.system.lockoutFailures')}</label>
          <input id="lockoutFailures" name="lockoutFailures" type="number" min="1" max="100" required value="${values[SETTING.lockoutFailures]}">
          <label for="lockoutMinutes">${t(l, 'admin.system.lockoutMinutes')}</label>
          <input id="lockoutMinutes" name="lockoutMinutes" type="number" min="1" max="1440" required value="${values[SETTING.lockoutMinutes]}">
          <label for="sessionTimeout">${t(l, 'admin.system.sessionTimeout')}</label>
          <input id="sessionTimeout" name="sessionTimeout" type="number" min="5" max="10080" required value="${values[SETTING.sessionTimeoutMinutes]}">
          <p><button class="primary" type="submit">${t(l, 'admin.system.save')}</button></p>
        </form>
      </section>
      ${scriptTag('settings-page.js')}`;
    return sendPage(request, reply, { title: t(l, 'admin.settings.title'), body, status: extra.status, notice: extra.notice });
  }

  app.get('/admin/settings', { preHandler: [requireAdmin] }, async (request, reply) => {
    const q = request.query as Form;
    const l = localeOf(request);
    return render(request, reply, { notice: q.applied ? t(l, 'admin.license.applied') : q.saved ? t(l, 'admin.system.saved') : undefined });
  });

  app.post('/admin/settings', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const l = localeOf(request);
    const b = (request.body ?? {}) as Form;
    const ints: Array<[string, string, number, number, string]> = [
      ['lockoutFailures', SETTING.lockoutFailures, 1, 100, 'admin.system.lockoutFailures'],
      ['lockoutMinutes', SETTING.lockoutMinutes, 1, 1440, 'admin.system.lockoutMinutes'],
      ['sessionTimeout', SETTING.sessionTimeoutMinutes, 5, 10080, 'admin.system.sessionTimeout'],
    ];
    const level = String(b.logLevel ?? '');
    if (!(LOG_LEVELS as readonly string[]).includes(level))
      return render(request, reply, { systemError: t(l, 'admin.system.invalid', { field: t(l, 'admin.system.logLevel') }), status: 400 });
    for (const [field, , min, max, label] of ints) {
      const v = String(b[field] ?? '');
      if (!/^\d{1,6}$/.test(v) || Number(v) < min || Number(v) > max)
        return render(request, reply, { systemError: t(l, 'admin.system.invalid', { field: t(l, label) }), status: 400 });
    }
    const actor = request.user?.username ?? null;
    await deps.settings.set(SETTING.logLevel, level, actor);
    for (const [field, key] of ints) await deps.settings.set(key, String(Number(b[field])), actor);
    // This process follows at once; the others read the setting on their next refresh.
    deps.log.level = level;
    return reply.redirect('/admin/settings?saved=1', 303);
  });

  // Multipart only in this scope, with the license file's own size limit.
  await app.register(async (scope) => {
    // Registered here unless the root already parses multipart; the limits are per request either way.
    if (!scope.hasRequestDecorator('parts')) await scope.register(multipart);
    const limits = { fileSize: ctx.licenseBytes, files: 1, fields: 5, fieldSize: 1024, parts: 6 };

    scope.post('/admin/settings/license/upload', { preHandler: [requireAdmin] }, async (request, reply) => {
      const l = localeOf(request);
      const actor = request.user?.username ?? null;
      let csrf: string | undefined;
      let file: Buffer | undefined;
      try {
        for await (const part of request.parts({ limits })) {
          if (part.type === 'file') {
            if (part.fieldname === 'license') file = await part.toBuffer();
            else await part.toBuffer();
          } else if (part.fieldname === 'csrf') csrf = String(part.value);
        }
      } catch (err) {
        const e = err as { code?: string; statusCode?: number };
        if (e.code === 'FST_REQ_FILE_TOO_LARGE' || e.statusCode === 413) {
          await auditLicense(deps.db, { actor, resultCode: 'COMMON_ERR_LICENSE_TOO_LARGE', details: { stage: 'preview', limit: ctx.licenseBytes } });
          return render(request, reply, {
            licenseError: { message: t(l, 'admin.upload.tooLarge', { limit: fmtBytes(ctx.licenseBytes) }), code: 'COMMON_ERR_LICENSE_TOO_LARGE' },
            status: 413,
          });
        }
        if (e.code === 'FST_INVALID_MULTIPART_CONTENT_TYPE') file = undefined;
        else throw err;
      }
      if (!csrfMatches(request, csrf))
        return reply.code(403).type('application/json').send({ code: 'SERVER_ERR_CSRF', message: 'CSRF token missing or wrong' });
      if (!file || file.length === 0)
        return render(request, reply, { licenseError: { message: t(l, 'admin.license.noFile'), code: 'COMMON_ERR_LICENSE_MALFORMED' }, status: 400 });
      const result = await applyUpload(deps.db, verifier, file, { actor, stage: 'preview' });
      if (!result.ok)
        return render(request, reply, {
          licenseError: { message: t(l, `admin.license.err.${result.error.code}`), code: result.error.code },
          status: result.error.status,
        });
      const body = html`<section class="card" id="license-preview-card"><h2>${t(l, 'admin.license.preview')}</h2>
        ${previewTable(l, result.preview)}
        <form method="post" action="/admin/settings/license/apply" id="license-apply">
          ${csrfField(request)}
          <input type="hidden" name="license" value="${file.toString('base64')}">
          <p><button class="primary" type="submit" id="license-apply-button">${t(l, 'admin.license.apply')}</button>
          <a href="/admin/settings">${t(l, 'admin.license.cancel')}</a></p>
        </form></section>`;
      return sendPage(request, reply, { title: t(l, 'admin.license.title'), body });
    });
  });

  // The same for automation (bearer token or API token of an admin): GET the state, POST the file as the body.
  app.get('/api/admin/license', { preHandler: [requireAdmin] }, async () => {
    const e = await loadLicenseEvaluation(deps.db, verifier, { readOnly: true });
    const { notices: _n, ...rest } = e;
    return rest;
  });

  app.post('/api/admin/license', { preHandler: [requireAdmin, verifyCsrf], bodyLimit: ctx.licenseBytes }, async (request, reply) => {
    // The file is itself JSON; its signature covers the base64 payload, so re-serialising the outer object is harmless.
    const text = typeof request.body === 'string' ? request.body : JSON.stringify(request.body ?? null);
    const result = await applyUpload(deps.db, verifier, text, { actor: request.user?.username ?? null, stage: 'apply' });
    if (!result.ok) return reply.code(result.error.status).send(result.error.toJSON());
    const replies = await boosters.licenseChanged();
    return { applied: result.preview, boostersNotified: replies.filter((r) => r.ok).map((r) => r.url) };
  });

  app.post('/admin/settings/license/apply', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const l = localeOf(request);
    const b = (request.body ?? {}) as Form;
    const raw = String(b.license ?? '');
    // The preview's copy comes back from the browser: it is verified again, nothing is trusted.
    const bytes = /^[A-Za-z0-9+/]*={0,2}$/.test(raw) ? Buffer.from(raw, 'base64') : Buffer.alloc(0);
    const result = await applyUpload(deps.db, verifier, bytes, { actor: request.user?.username ?? null, stage: 'apply' });
    if (!result.ok)
      return render(request, reply, {
        licenseError: { message: t(l, `admin.license.err.${result.error.code}`), code: result.error.code },
        status: result.error.status,
      });
    const replies = await boosters.licenseChanged();
    for (const r of replies.filter((x) => !x.ok))
      deps.log.warn(
        { booster: r.url, status: r.status, error: r.error },
        'license-changed notice not accepted; that booster picks the license up on its next refresh',
      );
    return reply.redirect('/admin/settings?applied=1', 303);
  });
}
