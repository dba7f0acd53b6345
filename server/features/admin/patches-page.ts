import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { isOmflowError } from '../../../common/errors.js';
import {
  applyPatch,
  DEFAULT_LIMITS,
  haltRollout,
  listPatches,
  notifyBoostersOfPatch,
  resumeRollout,
  rollbackRollout,
  rolloutStatus,
  type TarLimits,
  type TrustedKeys,
} from '../../../common/patch/index.js';
import type { ServerDeps } from '../../types.js';
import { scriptTag } from '../../web/assets.js';
import { requireAdmin, verifyCsrf } from '../users/guards.js';
import { csrfField, csrfMatches, errorBox, type Form, fmtBytes, fmtTime, html, localeOf, sendPage, t } from './shared.js';

export interface PatchPageOptions {
  trusted: TrustedKeys;
  limits?: TarLimits;
  chunkBytes?: number;
  parallelism?: number;
  maxUploadBytes: number;
}

export async function patchesPage(app: FastifyInstance, ctx: { deps: ServerDeps; patch: PatchPageOptions }): Promise<void> {
  const { deps, patch } = ctx;

  async function render(
    request: FastifyRequest,
    reply: FastifyReply,
    extra: { notice?: string; error?: { message: string; code?: string }; status?: number } = {},
  ) {
    const l = localeOf(request);
    const [view, patches] = await Promise.all([rolloutStatus(deps.db), listPatches(deps.db, 10)]);
    const r = view.rollout;
    const action = (name: 'halt' | 'resume' | 'rollback', enabled: boolean) =>
      html`<form method="post" action="/admin/patches/rollouts/${r?.id ?? 0}/${name}" class="action">${csrfField(request)}<button type="submit" id="rollout-${name}" ${enabled ? '' : 'disabled'}>${t(l, `admin.patches.${name}`)}</button></form> `;
    const body = html`
      ${errorBox(extra.error?.message, extra.error?.code)}
      <section class="card"><h2>${t(l, 'admin.patches.upload')}</h2>
        <form method="post" action="/admin/patches" enctype="multipart/form-data" id="patch-upload">${csrfField(request)}
          <label for="patch-file">${t(l, 'admin.patches.file')} <small class="muted">(≤ ${fmtBytes(patch.maxUploadBytes)})</small></label>
          <input type="file" id="patch-file" name="patch" accept=".tar.gz,.tgz,application/gzip" required>
          <p><button class="primary" type="submit">${t(l, 'admin.patches.submit')}</button></p></form></section>
      <section class="card" id="rollout"><h2>${t(l, 'admin.patches.rollout')}</h2>
        ${
          r
            ? html`<p><strong id="rollout-version">${r.version}</strong> (#${r.sequence}) · <span id="rollout-state" data-state="${r.state}">${r.state}</span>
              ${r.haltedReason ? html` · <span class="error">${r.haltedReason}</span>` : ''} · ${fmtTime(r.startedAt)}</p>
            <p>${action('halt', r.state === 'active' || r.state === 'rolling_back')}${action('resume', r.state === 'halted')}${action('rollback', r.state === 'active' || r.state === 'halted')}</p>`
            : html`<p class="muted">${t(l, 'admin.patches.none')}</p>`
        }
        <table id="rollout-nodes"><thead><tr><th>${t(l, 'admin.patches.node')}</th><th>${t(l, 'admin.cluster.version')}</th><th>${t(l, 'admin.cluster.agent')}</th><th>${t(l, 'admin.cluster.state')}</th><th>${t(l, 'admin.patches.error')}</th></tr></thead><tbody>
        ${view.nodes.map((n) => html`<tr data-node="${n.serverId}"><td>${n.serverId}</td><td>${n.version ?? '-'}</td><td>${n.agentState ?? '-'}</td><td>${n.rolloutState ?? '-'}</td><td class="error">${n.error ?? ''}</td></tr>`)}
        </tbody></table></section>
      ${scriptTag('patches-page.js')}
      <section class="card"><h2>${t(l, 'admin.patches.stored')}</h2><table id="patches"><thead><tr><th>${t(l, 'admin.cluster.version')}</th><th>${t(l, 'admin.patches.sequence')}</th><th>Key</th><th>Size</th><th>${t(l, 'admin.license.auditWho')}</th><th>${t(l, 'admin.license.auditWhen')}</th></tr></thead><tbody>
        ${patches.map((p) => html`<tr><td>${p.version}</td><td>${p.sequence}</td><td>${p.keyId}</td><td>${fmtBytes(p.archiveSize)}</td><td>${p.appliedBy ?? ''}</td><td>${fmtTime(p.createdAt)}</td></tr>`)}
        </tbody></table></section>`;
    return sendPage(request, reply, { title: t(l, 'admin.patches.title'), body, notice: extra.notice, status: extra.status });
  }

  app.get('/admin/patches', { preHandler: [requireAdmin] }, async (request, reply) => {
    const q = request.query as Form;
    const l = localeOf(request);
    const notice = q.uploaded
      ? t(l, 'admin.patches.uploaded', { version: q.uploaded })
      : q.done
        ? t(l, 'admin.patches.done', { action: t(l, `admin.patches.${q.done}`) })
        : undefined;
    return render(request, reply, { notice });
  });

  await app.register(async (scope) => {
    // Registered here unless the root already parses multipart; the limits are per request either way.
    if (!scope.hasRequestDecorator('parts')) await scope.register(multipart);
    const limits = { fileSize: patch.maxUploadBytes, files: 1, fields: 5, fieldSize: 1024, parts: 6 };
    scope.post('/admin/patches', { preHandler: [requireAdmin] }, async (request, reply) => {
      const l = localeOf(request);
      let csrf: string | undefined;
      let file: Buffer | undefined;
      try {
        for await (const part of request.parts({ limits })) {
          if (part.type === 'file') {
            const buf = await part.toBuffer();
            if (part.fieldname === 'patch') file = buf;
          } else if (part.fieldname === 'csrf') csrf = String(part.value);
        }
      } catch (err) {
        const e = err as { code?: string; statusCode?: number };
        if (e.code === 'FST_REQ_FILE_TOO_LARGE' || e.statusCode === 413)
          return render(request, reply, {
            error: { message: t(l, 'admin.upload.tooLarge', { limit: fmtBytes(patch.maxUploadBytes) }), code: 'COMMON_ERR_PAYLOAD_TOO_LARGE' },
            status: 413,
          });
        throw err;
      }
      if (!csrfMatches(request, csrf))
        return reply.code(403).type('application/json').send({ code: 'SERVER_ERR_CSRF', message: 'CSRF token missing or wrong' });
      if (!file?.length) return render(request, reply, { error: { message: t(l, 'admin.license.noFile') }, status: 400 });
      try {
        const stored = await applyPatch(deps.db, file, patch.trusted, {
          verify: { limits: patch.limits ?? DEFAULT_LIMITS },
          chunkBytes: patch.chunkBytes,
          parallelism: patch.parallelism,
          appliedBy: request.user?.username,
          appliedOn: deps.nodeId,
        });
        await notifyBoostersOfPatch(deps.boosterUrls, { secret: deps.clusterSecret, nodeId: deps.nodeId }, stored.notice);
        deps.log.info({ version: stored.version, sequence: stored.sequence, by: request.user?.username }, 'patch uploaded on the admin page');
        return reply.redirect(`/admin/patches?uploaded=${encodeURIComponent(stored.version)}`, 303);
      } catch (err) {
        if (!isOmflowError(err)) throw err;
        deps.log.warn({ err, by: request.user?.username }, 'patch upload refused');
        return render(request, reply, { error: { message: err.message, code: err.code }, status: err.status });
      }
    });
  });

  app.post('/admin/patches/rollouts/:id/:action', { preHandler: [requireAdmin, verifyCsrf] }, async (request, reply) => {
    const { id, action } = request.params as { id: string; action: string };
    const rid = /^\d+$/.test(id) && id !== '0' ? Number(id) : undefined;
    try {
      if (action === 'halt') await haltRollout(deps.db, rid, `halted by ${request.user?.username ?? 'an operator'}`);
      else if (action === 'resume') await resumeRollout(deps.db, rid);
      else if (action === 'rollback') await rollbackRollout(deps.db, rid);
      else return reply.code(404).send({ code: 'SERVER_ERR_NOT_FOUND', message: 'unknown action' });
    } catch (err) {
      if (!isOmflowError(err)) throw err;
      return render(request, reply, { error: { message: err.message, code: err.code }, status: err.status });
    }
    deps.log.info({ rolloutId: rid, action, by: request.user?.username }, 'rollout action on the admin page');
    return reply.redirect(`/admin/patches?done=${action}`, 303);
  });
}
