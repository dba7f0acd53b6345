import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NamedToken } from '../../common/config/define.js';
import { CommonErrors, isOmflowError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { audiencesFor, bearerMatches } from '../../common/protocol/cluster-auth.js';
import { createClusterClient } from '../../common/protocol/cluster-client.js';
import { AGENT_PATH, BOOSTER_PATH, HEADER } from '../../common/protocol/headers.js';
import {
  type Heartbeat,
  type HeartbeatReply,
  type MaintenanceCommand,
  parseAgentReport,
  parseDrainCommand,
  parseHeartbeat,
  parseMaintenanceCommand,
  parsePatchNotice,
  parseSwitchoverCommand,
  parseTakeoverCall,
  parseWeightCommand,
} from '../../common/protocol/messages.js';
import { createSignedEndpoint, sendJson as json, sendWireError } from '../../common/protocol/signed-endpoint.js';
import { WIRE_ERROR } from '../../common/protocol/wire-errors.js';
import { BoosterErrors } from '../errors.js';
import { sendError } from '../replies.js';

/**
 * The /_booster/ API: a tiny router, no framework. GET active is open and says only whether
 * this booster is the active one; GET status/metrics/events need the operator token or a
 * cluster signature; every POST is signed, nonce-checked (a replay is refused), size-limited,
 * validated, and refused with a stable code before anything is registered. The operator
 * commands (servers/:id/drain|undrain|weight|retire, switchover, maintenance) also take a token
 * with the write scope; each is recorded in the event log with who asked.
 */
export interface ControlCore {
  secret: string;
  nodeId: string;
  bodyLimit: number;
  log: Logger;
  /** OMFLOW_BOOSTER_OPERATOR_TOKEN: Bearer token for the read-only paths. */
  operatorToken?: string;
  /** OMFLOW_BOOSTER_OPERATOR_WRITE_TOKENS: Bearer tokens for the commands too. */
  writeTokens?: () => readonly NamedToken[];
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
  /** The server commands; false for a server the database does not know. `by`: who asked (event log). */
  drain(serverId: string, draining: boolean, reason: string | null, by: string): Promise<boolean>;
  setWeight(serverId: string, weight: number, by: string): Promise<boolean>;
  /** Throws BOOSTER_ERR_SERVER_LIVE while the server heartbeats. */
  retire(serverId: string, by: string): Promise<boolean>;
  /** Active only: hands the lease to the standby (`to`: its node id, default the peer) and answers once it took it. */
  switchover(to: string | null, by: string): Promise<unknown>;
  /** Standby: the active handed us the lease at this epoch (switchover). */
  takeover(epoch: number, from: string): Promise<unknown>;
  maintenance(cmd: MaintenanceCommand, by: string): Promise<unknown>;
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

const SERVER_COMMAND = /^\/_booster\/servers\/([^/]+)\/(drain|undrain|weight|retire)$/;

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const forwardedByWorker = new WeakSet<IncomingMessage>();

/** The primary's loopback listener for the workers: requests it gets were forwarded by a worker. */
export function fromWorkers(handler: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    forwardedByWorker.add(req);
    handler(req, res);
  };
}

/** True for HTTPS and HTTP/2 requests (h2 requests expose the TLS socket through a proxy), and for those a worker says came over TLS. */
function overTls(req: IncomingMessage): boolean {
  if ((req.socket as { encrypted?: boolean } | undefined)?.encrypted === true) return true;
  return forwardedByWorker.has(req) && req.headers[HEADER.clientTls] === '1';
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
    get bodyLimit() {
      return core.bodyLimit;
    },
    get operatorToken() {
      return core.operatorToken;
    },
    writeTokens: core.writeTokens,
    audiences: core.selfUrls ? () => audiences(core.selfUrls!()) : undefined,
  });
  const signed = (req: IncomingMessage) => endpoint.read(req);

  /** With TLS on the port a token crosses plain HTTP only to be refused (it is then known to the network). */
  function refuseTokenInClear(req: IncomingMessage): void {
    if (core.tokenNeedsTls && req.headers[HEADER.clusterSignature] === undefined && req.headers.authorization !== undefined && !overTls(req)) {
      req.resume();
      throw CommonErrors.COMMON_ERR_OPERATOR_AUTH(
        'The operator token is accepted over HTTPS only: use https:// (and replace the token, it crossed the network in clear)',
        { reason: 'plain-http' },
      );
    }
  }

  /** An operator command: a write token or a signature; `by` names the token, or the signed caller and whom it acts for. */
  async function command(req: IncomingMessage): Promise<{ value: unknown; by: string }> {
    refuseTokenInClear(req);
    const call = await endpoint.authorizeWrite(req);
    const onBehalf = (call.value as { by?: unknown }).by;
    const by = call.nodeId && typeof onBehalf === 'string' && onBehalf ? `${onBehalf.slice(0, 64)} via ${call.nodeId}` : call.actor;
    return { value: call.value, by };
  }
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
          const body = peer ? { active, role: core.role(), epoch: core.epoch(), nodeId: core.nodeId, url: core.selfUrls?.()[0] ?? null } : { active };
          return json(res, active ? 200 : 503, body, to ? { [HEADER.active]: to } : undefined);
        }
      }
      if (path === BOOSTER_PATH.status || path === BOOSTER_PATH.metrics || path === BOOSTER_PATH.events) {
        refuseTokenInClear(req);
        // A write token reads too.
        if (!core.writeTokens?.().some((t) => bearerMatches(req.headers.authorization, t.token))) await endpoint.authorizeRead(req);
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
    const serverCommand = SERVER_COMMAND.exec(path);
    if (serverCommand) {
      const { value, by } = await command(req);
      if (core.leaseNotHeld?.()) return sendError(res, BoosterErrors.BOOSTER_ERR_LEASE_NOT_HELD(), { 'retry-after': '1' });
      // An id that is not valid percent-encoding names no server (decodeURIComponent would throw).
      const id = safeDecode(serverCommand[1]);
      const verb = serverCommand[2];
      let known: boolean;
      let answer: Record<string, unknown>;
      if (verb === 'weight') {
        const { weight } = parseWeightCommand(value);
        known = await core.setWeight(id, weight, by);
        answer = { id, weight };
      } else if (verb === 'retire') {
        known = await core.retire(id, by);
        answer = { id, retired: true };
      } else {
        const { reason } = parseDrainCommand(value);
        known = await core.drain(id, verb === 'drain', reason ?? null, by);
        answer = { id, draining: verb === 'drain' };
      }
      if (!known) return sendError(res, BoosterErrors.BOOSTER_ERR_UNKNOWN_SERVER());
      return json(res, 200, answer);
    }
    switch (path) {
      case BOOSTER_PATH.switchover: {
        const { value, by } = await command(req);
        const { to } = parseSwitchoverCommand(value);
        if (core.role() !== 'active') {
          const activeUrl = core.activeUrl();
          return json(
            res,
            409,
            BoosterErrors.BOOSTER_ERR_NOT_ACTIVE(undefined, { activeUrl }).toJSON(),
            activeUrl ? { [HEADER.active]: activeUrl } : undefined,
          );
        }
        return json(res, 200, await core.switchover(to ?? null, by));
      }
      case BOOSTER_PATH.takeover: {
        const { value } = await signed(req);
        const call = parseTakeoverCall(value);
        return json(res, 200, await core.takeover(call.epoch, call.from));
      }
      case BOOSTER_PATH.maintenance: {
        const { value, by } = await command(req);
        const cmd = parseMaintenanceCommand(value);
        if (core.leaseNotHeld?.()) return sendError(res, BoosterErrors.BOOSTER_ERR_LEASE_NOT_HELD(), { 'retry-after': '1' });
        return json(res, 200, await core.maintenance(cmd, by));
      }
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
