import { METHODS } from 'node:http';
import { createRequire } from 'node:module';

/**
 * Node's own llhttp binding: the parser node:http runs on every request, in strict mode, with
 * every smuggling guard it has (CL + TE, duplicate or signed Content-Length, obs-fold, bare CR/LF,
 * bad chunk sizes). The lean HTTP/1.1 path uses it on both sides instead of a parser of our own.
 * Node 20 hands it out through `process.binding` (deprecated, DEP0111); Node 24, which the release
 * packages carry, no longer does, but node:http's own `_http_common` module still exports the same
 * class. When neither has it the lean path turns itself off and node:http + undici serve
 * everything, as they did before it.
 */
export interface LlhttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  consume(handle: unknown): void;
  unconsume(): void;
  getCurrentBuffer(): Buffer;
  pause(): void;
  resume(): void;
  close(): void;
  free(): void;
  [callback: number]: unknown;
}

interface Binding {
  HTTPParser: {
    new (): LlhttpParser;
    REQUEST: number;
    RESPONSE: number;
    kOnMessageBegin: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kOnExecute: number;
    kLenientNone: number;
  };
  /** http.METHODS: the methods node:http lists, not in the parser's numbering. */
  methods: string[];
  /** Every method llhttp parses, indexed by the number its callbacks report (what node:http reads). */
  allMethods?: string[];
}

const usable = (b: Binding | undefined): Binding | null =>
  b && typeof b.HTTPParser === 'function' && typeof b.HTTPParser.prototype.consume === 'function' && Array.isArray(b.methods) ? b : null;

function fromProcessBinding(): Binding | null {
  try {
    const p = process as unknown as { binding?: (name: string) => Binding };
    const noDeprecation = process.noDeprecation;
    process.noDeprecation = true; // DEP0111 is a warning about this very call, once per process
    try {
      return usable(p.binding?.('http_parser'));
    } finally {
      process.noDeprecation = noDeprecation;
    }
  } catch {
    return null;
  }
}

function fromHttpCommon(): Binding | null {
  try {
    return usable(createRequire(import.meta.url)('_http_common') as Binding);
  } catch {
    return null;
  }
}

function load(): Binding | null {
  return fromProcessBinding() ?? fromHttpCommon();
}

export const llhttp = load();

/** The lean path can run on this Node (its parser binding is there). */
export const leanHttp1Available = llhttp !== null;

/** Largest request or response head (node:http's default is 16 KiB too). */
const MAX_HEAD_BYTES = 16 * 1024;

/** Return value of an on-headers-complete callback: no body follows (HEAD, 204, 304). */
export const SKIP_BODY = 1;
/** Return value of an on-headers-complete callback: stop after this head (hand the rest over). */
export const STOP_AFTER_HEAD = 2;

/** Methods llhttp parses in requests that http.METHODS may not list (RTSP's, PRI). */
const MORE_METHODS = [
  'PRI',
  'QUERY',
  'DESCRIBE',
  'ANNOUNCE',
  'SETUP',
  'PLAY',
  'PAUSE',
  'TEARDOWN',
  'GET_PARAMETER',
  'SET_PARAMETER',
  'REDIRECT',
  'RECORD',
  'FLUSH',
];

/**
 * The parser's method numbers to names. llhttp numbers every method it knows and node:http reads
 * the name from the binding's `allMethods`; `methods` is a shorter list in another order (there
 * QUERY's number finds nothing and PRI's finds QUERY). Where `allMethods` is not exposed (Node 24
 * reaches the parser through _http_common, which exports `methods` only) the table is learnt from
 * the parser itself: each method name, parsed once, reports its number.
 */
function methodTable(b: Binding): string[] {
  if (b.allMethods) return b.allMethods;
  const table: string[] = [];
  const P = b.HTTPParser;
  for (const name of new Set([...METHODS, ...MORE_METHODS])) {
    const p = newParser(b, P.REQUEST);
    p[P.kOnHeadersComplete] = (_major: number, _minor: number, _h: unknown, method: number) => {
      table[method] = name;
      return 0;
    };
    try {
      p.execute(Buffer.from(`${name} / HTTP/1.1\r\nHost: x\r\n\r\n`, 'latin1'));
    } catch {
      // Not a method this parser takes.
    } finally {
      p.close();
    }
  }
  return table;
}

const tables = new WeakMap<Binding, string[]>();

/** The name of the method the parser reported (undefined: one it has no name for). */
export function methodName(b: Binding, method: number): string | undefined {
  let t = tables.get(b);
  if (!t) tables.set(b, (t = methodTable(b)));
  return t[method];
}

/**
 * Releases a parser for good. The binding's object is held by a strong handle until `close()`
 * deletes it, so a parser never closed keeps its callbacks and all they reach (the connection,
 * its socket, its buffers) for the life of the process: node:http closes every one of its own
 * (freeParser). Closed a turn later, as node:http does: this may run inside one of its callbacks.
 */
export function releaseParser(p: LlhttpParser): void {
  p.unconsume();
  setImmediate(closeParser, p);
}

function closeParser(p: LlhttpParser): void {
  p.close();
}

export function newParser(b: Binding, type: number): LlhttpParser {
  const p = new b.HTTPParser();
  p.initialize(type, {}, MAX_HEAD_BYTES, b.HTTPParser.kLenientNone);
  return p;
}
