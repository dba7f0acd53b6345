/**
 * Node's own llhttp binding: the parser node:http runs on every request, in strict mode, with
 * every smuggling guard it has (CL + TE, duplicate or signed Content-Length, obs-fold, bare CR/LF,
 * bad chunk sizes). The lean HTTP/1.1 path uses it on both sides instead of a parser of our own.
 * `process.binding` is deprecated (DEP0111) without a removal date; when it is gone the lean path
 * turns itself off and node:http + undici serve everything, as they did before it.
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
  methods: string[];
}

function load(): Binding | null {
  try {
    const p = process as unknown as { binding?: (name: string) => Binding };
    const noDeprecation = process.noDeprecation;
    process.noDeprecation = true; // DEP0111 is a warning about this very call, once per process
    try {
      const b = p.binding?.('http_parser');
      return b && typeof b.HTTPParser === 'function' && typeof b.HTTPParser.prototype.consume === 'function' ? b : null;
    } finally {
      process.noDeprecation = noDeprecation;
    }
  } catch {
    return null;
  }
}

export const llhttp = load();

/** The lean path can run on this Node (its parser binding is there). */
export const leanHttp1Available = llhttp !== null;

/** Largest request or response head (node:http's default is 16 KiB too). */
export const MAX_HEAD_BYTES = 16 * 1024;

/** Return value of an on-headers-complete callback: no body follows (HEAD, 204, 304). */
export const SKIP_BODY = 1;
/** Return value of an on-headers-complete callback: stop after this head (hand the rest over). */
export const STOP_AFTER_HEAD = 2;

export function newParser(b: Binding, type: number): LlhttpParser {
  const p = new b.HTTPParser();
  p.initialize(type, {}, MAX_HEAD_BYTES, b.HTTPParser.kLenientNone);
  return p;
}
