import type { IncomingMessage, ServerResponse } from 'node:http';
import { CommonErrors, isOmflowError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { audiencesFor } from '../../common/protocol/cluster-auth.js';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { AGENT_PATH, BOOSTER_PATH, HEADER } from '../../common/protocol/headers.js';
import { type Heartbeat, type HeartbeatReply, parseAgentReport, parseHeartbeat, parsePatchNotice } from '../../common/protocol/messages.js';
import { createSignedEndpoint, sendJson as json, sendWireError } from '../../common/protocol/signed-endpoint.js';
import { WIRE_ERROR } from '../../common/protocol/wire-errors.js';
import { BoosterErrors } from '../errors.js';
import { sendError } from '../replies.js';

/**
 * The /_booster/ API: a tiny router, no framework. GET active is open and says only whether
 * this booster is the active one; GET status/metrics/events need the operator token or a
 * cluster signature; every POST is signed, nonce-checked (a replay is refused), size-limited,
 * validated, and refused with a stable code before anything is registered.
 */
export interface ControlCore {
  secret: string;
  nodeId: string;
  bodyLimit: number;
  log: Logger;
  /** OMFLOW_BOOSTER_OPERATOR_TOKEN: Bearer token for the read-only paths. */
  operatorToken?: string;
  /**
   * The port speaks TLS: the operator token is then accepted over TLS only. Plain HTTP on the
   * same port stays open to signed cluster calls (HMAC, nothing secret on the wire), but a
   * Bearer token sent in clear is refused, so a mis-set scrape (http://) fails loudly instead
   * of working while it shows the token to the users' network.
   */
  tokenNeedsTls?: boolean;
  /** URLs this booster is reached by (advertise URL); signed calls for another audience are refused. */
  selfUrls?: () => readonly (string | null | undefined)[];
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

/**
 * Wake-up hint: an app server POSTs here (signed, empty body) right after committing a
 * transaction that made a step ready, so the active dispatches it at once instead of at its
 * next poll. Polling stays the fallback (a lost hint costs at most one poll interval).
 */
export const STEPS_READY_PATH = BOOSTER_PATH.stepsReady;

const DRAIN = /^\/_booster\/servers\/([^/]+)\/(drain|undrain)$/;

/** True for HTTPS and HTTP/2 requests (h2 requests expose the TLS socket through a proxy). */
function overTls(req: IncomingMessage): boolean {
  return (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
}

export function createControlApi(core: ControlCore) {
  // The booster's URL is known only after listen; the accepted audiences are computed once per URL.
  let memo: { key: string; list: string[] } | null = null;
  const audiences = (urls: readonly (string | null | undefined)[]) => {
    const key = urls.join(' ');
    if (!key.trim()) return undefined;
    if (memo?.key !== key) memo = { key, list: audiencesFor(urls) };
    return memo.list;
  };
  const endpoint = createSignedEndpoint({
    secret: core.secret,
    bodyLimit: core.bodyLimit,
    operatorToken: core.operatorToken,
    audiences: core.selfUrls ? () => audiences(core.selfUrls!()) : undefined,
  });
  const signed = (req: IncomingMessage) => endpoint.read(req);
  const agents = createClusterClient({ secret: core.secret, nodeId: core.nodeId, timeoutMs: 3000 });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q >= 0 ? url.slice(0, q) : url;
    const method = req.method ?? 'GET';
    if (method === 'GET' || method === 'HEAD') {
      switch (path) {
        case BOOSTER_PATH.active: {
          // Open (keepalived, load-balancer checks): yes or no, nothing about the cluster.
          // X-Booster-Active is what a standby's data-plane 503 says anyway.
          const active = core.role() === 'active';
          const to = active ? null : core.activeUrl();
          // A signed probe (the peer booster) also learns role and epoch; anyone else only yes or no.
          const peer =
            req.headers[HEADER.clusterSignature] !== undefined &&
            (await endpoint.authorizeRead(req).then(
              () => true,
              () => false,
            ));
          const body = peer ? { active, role: core.role(), epoch: core.epoch() } : { active };
          return json(res, active ? 200 : 503, body, to ? { [HEADER.active]: to } : undefined);
        }
      }
      if (path === BOOSTER_PATH.status || path === BOOSTER_PATH.metrics || path === BOOSTER_PATH.events) {
        if (core.tokenNeedsTls && req.headers[HEADER.clusterSignature] === undefined && req.headers.authorization !== undefined && !overTls(req)) {
          req.resume();
          throw CommonErrors.COMMON_ERR_OPERATOR_AUTH(
            'The operator token is accepted over HTTPS only: use https:// (and replace the token, it crossed the network in clear)',
            {
              reason: 'plain-http',
            },
          );
        }
        await endpoint.authorizeRead(req);
      }
      switch (path) {
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
        const replies = await Promise.all(targets.map((agentUrl) => agents.call(agentUrl, 'POST', AGENT_PATH.patchNotice, body.toString('utf8'))));
        const failed = targets.filter((_, i) => !replies[i].ok);
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
      if (isOmflowError(err) && (err.status < 500 || err.code === WIRE_ERROR.clusterBusy)) {
        if (err.status === 401 || err.status === 503)
          core.log.warn({ path: req.url, node: req.headers[HEADER.clusterNode], code: err.code, details: err.details }, 'refused unauthenticated control call');
        return sendWireError(res, err);
      }
      core.log.warn({ err, path: req.url }, 'control call failed');
      const e = isOmflowError(err) ? err : BoosterErrors.BOOSTER_ERR_UPSTREAM('internal error');
      if (!res.headersSent) json(res, e.status >= 400 ? e.status : 500, { code: e.code, message: e.message });
      else res.destroy();
    });
  };
}
