import type { Readable } from 'node:stream';
import { type Dispatcher, Pool } from 'undici';
import { Http1Pool, type Http1PoolOptions } from './http1/http1-pool.js';
import { leanHttp1Available } from './http1/llhttp.js';

/**
 * One connection pool per app server, shared by the reverse proxy, the health checker and
 * the step dispatcher. Mechanism only: which server to use is the table's business. The pool
 * comes from an injected factory so tests can hand in fakes.
 */

/** A request to one app server as the proxy sends it: a flat header list and the body it can send. */
export interface UpstreamRequest<Body> {
  method: string;
  path: string;
  headers: string[];
  body: Body;
}

/** undici's dispatch-handler protocol, which the lean pool speaks too: the proxy's `Attempt` is one. */
export interface UpstreamHandler {
  onConnect(abort: (err?: Error) => void): void;
  /** Header names and values: Buffers from undici, strings from the lean pool. */
  onHeaders(statusCode: number, rawHeaders: (Buffer | string)[], resume: () => void, statusText: string): boolean;
  onData(chunk: Buffer): boolean;
  onComplete(trailers: string[] | null): void;
  onError(err: Error): void;
}

/**
 * The one dispatcher type of the data plane: undici's `Pool` is one for any body, the lean
 * `Http1Pool` for a body already in memory (`Body` says which bodies it can send).
 */
export interface UpstreamDispatcher<Body = Buffer | Readable | null> {
  dispatch(req: UpstreamRequest<Body>, handler: UpstreamHandler): boolean;
  close(): Promise<void>;
  destroy(): Promise<void>;
}

/** A server's undici pool: it dispatches any body, and serves the health checker's and the step dispatcher's plain requests. */
export type UpstreamPool = UpstreamDispatcher & Pick<Dispatcher, 'request'>;

export interface UpstreamPoolOptions extends Http1PoolOptions {
  /** Also open a lean HTTP/1.1 pool per server (for requests whose body is in memory); default false. */
  leanHttp1?: boolean;
}

export type PoolFactory = (origin: string, opts: UpstreamPoolOptions) => UpstreamPool;

export interface Upstream {
  readonly pool: UpstreamPool;
  readonly origin: URL;
  /** The lean HTTP/1.1 pool of the same server (null: off, not http:, or unavailable). */
  readonly http1: UpstreamDispatcher<Buffer | null> | null;
}

/** What a pool is keyed on: a server's id and its current URL. */
export interface UpstreamTarget {
  readonly id: string;
  readonly url: string;
}

export const undiciPoolFactory: PoolFactory = (origin, o) =>
  new Pool(origin, {
    connections: o.connectionsPerServer,
    pipelining: 1,
    connect: { timeout: o.connectTimeoutMs },
    headersTimeout: o.headersTimeoutMs,
    bodyTimeout: o.idleTimeoutMs,
    keepAliveTimeout: o.keepAliveMs,
    keepAliveMaxTimeout: o.keepAliveMs,
  });

type Slot = Upstream & { url: string };

function closeSlot(p: Slot): Promise<void> {
  return Promise.all([p.pool.close().catch(() => {}), p.http1?.close()]).then(() => {});
}

export class UpstreamPools {
  readonly #pools = new Map<string, Slot>();
  #closing: Promise<void> | null = null;
  #destroyed = false;

  constructor(
    private readonly opts: UpstreamPoolOptions,
    private readonly factory: PoolFactory = undiciPoolFactory,
  ) {}

  /** The pool of a server; a changed URL closes the old pool (gracefully) and opens a new one. */
  get(t: UpstreamTarget): Upstream {
    let p = this.#pools.get(t.id);
    if (p === undefined || p.url !== t.url) {
      if (this.#closing || this.#destroyed) throw new Error('upstream pools are closed');
      if (p) void closeSlot(p);
      const origin = new URL(t.url);
      const http1 = this.opts.leanHttp1 && origin.protocol === 'http:' && leanHttp1Available ? new Http1Pool(origin.origin, this.opts) : null;
      p = { url: t.url, origin, pool: this.factory(origin.origin, this.opts), http1 };
      this.#pools.set(t.id, p);
    }
    return p;
  }

  get size(): number {
    return this.#pools.size;
  }

  /** Drains: in-flight requests finish, then the connections close. Same promise on every call. */
  close(): Promise<void> {
    return (this.#closing ??= Promise.all([...this.#pools.values()].map(closeSlot)).then(() => {}));
  }

  /** Aborts everything at once. Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const p of this.#pools.values()) {
      void p.pool.destroy().catch(() => {});
      void p.http1?.destroy();
    }
  }
}
