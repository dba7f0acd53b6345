import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NamedToken } from '../config/define.js';
import { CommonErrors, type OmflowError } from '../errors.js';
import { bearerMatches, clusterAuthError, ReplayGuard, verifyClusterRequest } from './cluster-auth.js';
import { HEADER } from './headers.js';

/**
 * The receiving side of signed cluster calls on a plain node:http server (booster control
 * plane, agent control API): a bounded body reader, signature + nonce + audience check with
 * one ReplayGuard per receiver, JSON parsing, and the operator-token alternative for reads.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
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

export function sendJson(res: ServerResponse, status: number, value: unknown, extra?: Record<string, string>): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(body);
}

export function sendWireError(res: ServerResponse, err: OmflowError): void {
  sendJson(res, err.status, err.toJSON(), err.status === 401 ? { 'www-authenticate': 'Bearer realm="omflow-booster"' } : undefined);
}

export interface SignedCall {
  body: Buffer;
  /** Parsed JSON body; {} for an empty body. */
  value: unknown;
  nodeId: string;
}

export interface SignedEndpoint {
  /** Reads, verifies (throws the wire error) and parses one signed call. */
  read(req: IncomingMessage): Promise<SignedCall>;
  /**
   * A read-only call (GET): an operator token or a signature. Throws COMMON_ERR_OPERATOR_AUTH
   * when neither is present, the cluster-auth error when a signature is present but bad.
   */
  authorizeRead(req: IncomingMessage): Promise<{ by: 'operator' | 'cluster'; nodeId?: string }>;
  /**
   * A command (POST): a token with the write scope or a signature, then the parsed body. `actor`
   * says who: `operator:<token name>`, or `cluster:<node id>`. A read-only token is refused
   * with COMMON_ERR_OPERATOR_SCOPE, an unknown one or none with COMMON_ERR_OPERATOR_AUTH.
   */
  authorizeWrite(req: IncomingMessage): Promise<SignedCall & { actor: string }>;
  readonly replay: ReplayGuard;
}

export function createSignedEndpoint(opts: {
  secret: string;
  bodyLimit: number;
  /** Audiences this receiver accepts (see audiencesFor); a function when its URL is known only after listen. */
  audiences?: readonly string[] | (() => readonly string[] | undefined);
  operatorToken?: string;
  /** Tokens with the write scope (a function: they may change on a reload). */
  writeTokens?: () => readonly NamedToken[];
  replay?: ReplayGuard;
}): SignedEndpoint {
  const replay = opts.replay ?? new ReplayGuard();
  const audiences = () => (typeof opts.audiences === 'function' ? opts.audiences() : opts.audiences);

  function verify(req: IncomingMessage, body: Buffer): string {
    const auth = verifyClusterRequest(opts.secret, { method: req.method ?? 'GET', path: req.url ?? '', headers: req.headers, body }, Date.now(), {
      replay,
      audiences: audiences(),
    });
    if (!auth.ok) throw clusterAuthError(auth.reason);
    return auth.nodeId;
  }

  function parse(body: Buffer): unknown {
    if (body.length === 0) return {};
    try {
      return JSON.parse(body.toString('utf8'));
    } catch {
      throw CommonErrors.COMMON_ERR_BAD_REQUEST('body is not JSON');
    }
  }

  return {
    replay,
    async read(req) {
      const body = await readBody(req, opts.bodyLimit);
      const nodeId = verify(req, body);
      return { body, value: parse(body), nodeId };
    },
    async authorizeWrite(req) {
      const auth = req.headers.authorization;
      if (req.headers[HEADER.clusterSignature] === undefined) {
        const named = opts.writeTokens?.().find((t) => bearerMatches(auth, t.token));
        if (!named) {
          req.resume();
          if (bearerMatches(auth, opts.operatorToken)) throw CommonErrors.COMMON_ERR_OPERATOR_SCOPE();
          throw CommonErrors.COMMON_ERR_OPERATOR_AUTH();
        }
        const body = await readBody(req, opts.bodyLimit);
        return { body, value: parse(body), nodeId: '', actor: `operator:${named.name}` };
      }
      const call = await this.read(req);
      return { ...call, actor: `cluster:${call.nodeId}` };
    },
    async authorizeRead(req) {
      if (bearerMatches(req.headers.authorization, opts.operatorToken)) return { by: 'operator' };
      if (req.headers[HEADER.clusterSignature] === undefined) {
        req.resume();
        throw CommonErrors.COMMON_ERR_OPERATOR_AUTH();
      }
      const body = await readBody(req, opts.bodyLimit);
      return { by: 'cluster', nodeId: verify(req, body) };
    },
  };
}
