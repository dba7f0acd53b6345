import type { IncomingMessage, ServerResponse } from 'node:http';
import { CommonErrors, isOmflowError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { signClusterRequest, verifyClusterRequest } from '../common/protocol/cluster-auth.js';
import { AGENT_PATH, BOOSTER_PATH } from '../common/protocol/headers.js';
import { parseAgentReport, parseHeartbeat, parsePatchNotice, type Heartbeat, type HeartbeatReply } from '../common/protocol/messages.js';
import { BoosterErrors } from './errors.js';
import { sendError } from './http-errors.js';

/**
 * The /_booster/ API: a tiny router, no framework. GET active/status/metrics/events are
 * read-only and open; every POST is signed with the cluster secret, size-limited, validated,
 * and refused with a stable code before anything is registered.
 */
export interface ControlCore {
  secret: string;
  nodeId: string;
  bodyLimit: number;
  log: Logger;
  role(): 'active' | 'standby';
  epoch(): number;
  activeUrl(): string | null;
  status(): Promise<unknown>;
  metrics(): Promise<{ contentType: string; body: string }>;
  events(limit: number): Promise<unknown[]>;
  heartbeat(hb: Heartbeat): Promise<void>;
  agentReport(r: ReturnType<typeof parseAgentReport>): Promise<void>;
  drain(serverId: string, draining: boolean, reason: string | null): Promise<boolean>;
  /** Active riding through a database outage: drains would be unfenced leader writes, so they are refused. */
  leaseNotHeld?(): boolean;
  agentUrls(): string[];
  licenseChanged(): Promise<void>;
  /** A step became ready (hint): wake the dispatcher. */
  stepsReady(): void;
}

function json(res: ServerResponse, status: number, value: unknown, extra?: Record<string, string>): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(body);
}

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(CommonErrors.COMMON_ERR_PAYLOAD_TOO_LARGE());
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(CommonErrors.COMMON_ERR_PAYLOAD_TOO_LARGE());
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * Wake-up hint: an app server POSTs here (signed, empty body) right after committing a
 * transaction that made a step ready, so the active dispatches it at once instead of at its
 * next poll. Polling stays the fallback (a lost hint costs at most one poll interval).
 */
export const STEPS_READY_PATH = BOOSTER_PATH.stepsReady;

const DRAIN = /^\/_booster\/servers\/([^/]+)\/(drain|undrain)$/;

export function createControlPlane(core: ControlCore) {
  async function signed(req: IncomingMessage): Promise<{ body: Buffer; value: unknown }> {
    const body = await readBody(req, core.bodyLimit);
    const auth = verifyClusterRequest(core.secret, { method: req.method ?? 'POST', path: req.url ?? '', headers: req.headers, body });
    if (!auth.ok) throw CommonErrors.COMMON_ERR_CLUSTER_AUTH(undefined, { reason: auth.reason });
    if (body.length === 0) return { body, value: {} };
    try {
      return { body, value: JSON.parse(body.toString('utf8')) };
    } catch {
      throw CommonErrors.COMMON_ERR_BAD_REQUEST('body is not JSON');
    }
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q >= 0 ? url.slice(0, q) : url;
    const method = req.method ?? 'GET';
    if (method === 'GET' || method === 'HEAD') {
      switch (path) {
        case BOOSTER_PATH.active: {
          const role = core.role();
          const active = core.activeUrl();
          return json(res, role === 'active' ? 200 : 503, { role, epoch: core.epoch(), nodeId: core.nodeId, activeUrl: active }, active ? { 'x-booster-active': active } : undefined);
        }
        case BOOSTER_PATH.status:
          return json(res, 200, await core.status());
        case BOOSTER_PATH.metrics: {
          const m = await core.metrics();
          res.writeHead(200, { 'content-type': m.contentType });
          return void res.end(m.body);
        }
        case BOOSTER_PATH.events: {
          const limit = Math.min(Math.max(Number(new URLSearchParams(q >= 0 ? url.slice(q + 1) : '').get('limit')) || 50, 1), 500);
          return json(res, 200, { events: await core.events(limit) });
        }
      }
      return sendError(res, BoosterErrors.BOOSTER_ERR_NOT_FOUND());
    }
    if (method !== 'POST') return sendError(res, BoosterErrors.BOOSTER_ERR_NOT_FOUND());
    const drain = DRAIN.exec(path);
    if (drain) {
      const { value } = await signed(req);
      if (core.leaseNotHeld?.()) return sendError(res, BoosterErrors.BOOSTER_ERR_LEASE_NOT_HELD(), { 'retry-after': '1' });
      const reason = typeof (value as { reason?: unknown }).reason === 'string' ? (value as { reason: string }).reason : null;
      const id = decodeURIComponent(drain[1]);
      if (!(await core.drain(id, drain[2] === 'drain', reason))) return sendError(res, BoosterErrors.BOOSTER_ERR_UNKNOWN_SERVER());
      return json(res, 200, { id, draining: drain[2] === 'drain' });
    }
    switch (path) {
      case BOOSTER_PATH.heartbeat: {
        const { value } = await signed(req);
        const hb = parseHeartbeat(value);
        await core.heartbeat(hb);
        const reply: HeartbeatReply = { role: core.role(), epoch: core.epoch(), boosterId: core.nodeId, activeUrl: core.activeUrl() };
        return json(res, 200, reply);
      }
      case BOOSTER_PATH.agentReport: {
        const { value } = await signed(req);
        await core.agentReport(parseAgentReport(value));
        return json(res, 200, { ok: true });
      }
      case BOOSTER_PATH.patchNotice: {
        const { body, value } = await signed(req);
        parsePatchNotice(value);
        const targets = core.agentUrls();
        const results = await Promise.allSettled(
          targets.map(async (agentUrl) => {
            const r = await fetch(agentUrl + AGENT_PATH.patchNotice, {
              method: 'POST',
              headers: { 'content-type': 'application/json', ...signClusterRequest(core.secret, core.nodeId, 'POST', AGENT_PATH.patchNotice, body) },
              body,
              signal: AbortSignal.timeout(3000),
            });
            await r.arrayBuffer();
            if (!r.ok) throw new Error(`agent answered ${r.status}`);
          }),
        );
        const failed = targets.filter((_, i) => results[i].status === 'rejected');
        if (failed.length) core.log.warn({ failed }, 'patch notice did not reach every agent; agents also poll the database');
        return json(res, 200, { notified: targets.length - failed.length, failed });
      }
      case STEPS_READY_PATH: {
        await signed(req);
        core.stepsReady();
        res.writeHead(204);
        return void res.end();
      }
      case BOOSTER_PATH.licenseChanged: {
        await signed(req);
        await core.licenseChanged();
        return json(res, 200, { ok: true });
      }
    }
    return sendError(res, BoosterErrors.BOOSTER_ERR_NOT_FOUND());
  }

  return function handle(req: IncomingMessage, res: ServerResponse): void {
    route(req, res).catch((err: unknown) => {
      if (isOmflowError(err) && err.status < 500) {
        if (err.code === CommonErrors.COMMON_ERR_CLUSTER_AUTH.code) core.log.warn({ path: req.url, node: req.headers['x-omflow-node'], details: err.details }, 'refused unauthenticated control call');
        return json(res, err.status, err.toJSON());
      }
      core.log.warn({ err, path: req.url }, 'control call failed');
      const e = isOmflowError(err) ? err : BoosterErrors.BOOSTER_ERR_UPSTREAM('internal error');
      if (!res.headersSent) json(res, e.status >= 400 ? e.status : 500, { code: e.code, message: e.message });
      else res.destroy();
    });
  };
}
