import pino from 'pino';
import type { Logger } from '../../common/log.js';
import { HEADER } from '../../common/protocol/headers.js';
import { parseTraceParent, startTrace, TRACEPARENT } from '../../common/protocol/trace-context.js';
import type { BoosterConfig } from '../config.js';
import { nextRequestId } from '../replies.js';

/**
 * The data plane's access log: one line per request when it completes (proxied, or answered by
 * the booster itself: standby, license gate, database pressure, `/_internal/`), in JSON or the
 * NCSA combined format, to the log stream or a file of its own. Filters as Envoy's and
 * Traefik's: a status floor and a duration floor select requests that are always logged; the
 * rest are sampled evenly. Written off the hot path, buffered as nginx's `access_log … buffer=
 * flush=`: a request writes its line into a chunk buffer (the lines are ASCII, so one byte per
 * character), and the chunk goes to pino's asynchronous destination (sonic-boom, in buffer mode)
 * when it is full or FLUSH_MS after its first line, whichever comes first. Both choices come from
 * the throughput bench: handing a chunk over on every event-loop turn made a write (a thread-pool
 * round trip) for every few requests, and sonic-boom's string mode flattens, measures and
 * re-encodes every pending string on each write; together they cost more than building the lines.
 * Every process of the data plane (a single booster, or each data-plane worker) has its own.
 */
export type AccessLogFormat = 'off' | 'json' | 'combined';

export interface AccessLogSettings {
  format: AccessLogFormat;
  /** Empty: the log stream (standard output). */
  file?: string;
  minStatus: number;
  slowMs: number;
  /** Of the requests no filter selected; undefined: 100 without a filter, 0 with one. */
  samplePercent?: number;
  query: 'keep' | 'redact' | 'drop';
}

export function accessLogSettingsOf(cfg: BoosterConfig): AccessLogSettings {
  return {
    format: cfg.accessLog,
    file: cfg.accessLogFile,
    minStatus: cfg.accessLogMinStatus,
    slowMs: cfg.accessLogSlowMs,
    samplePercent: cfg.accessLogSamplePercent,
    query: cfg.accessLogQuery,
  };
}

/** The request as the access log reads it: node:http's, HTTP/2's and the lean path's requests all have these. */
export interface LoggedRequest {
  readonly method?: string;
  readonly url?: string;
  readonly httpVersionMajor: number;
  readonly httpVersionMinor?: number;
  readonly socket: { readonly remoteAddress?: string } | null;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** What a finished request tells the access log (the proxy's exchange is one; the front router's own answers build one). */
export interface AccessRecord {
  readonly req: LoggedRequest;
  readonly requestId: string;
  readonly traceId: string;
  readonly epoch: number;
  /** The server that answered (the last one tried), null when none was. */
  readonly server: string | null;
  readonly attempts: number;
  /** Each retry: the server given up on and why (connect, status, reset). */
  readonly retries: readonly { server: string; reason: string }[] | null;
  /** Time waiting for a server slot (0: none), to reach a connection, to the response headers; null: the phase never happened. */
  readonly queueMs: number;
  readonly connectMs: number | null;
  readonly headersMs: number | null;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** The booster's own error code (shed, gate, standby, queue timeout…), null when the server answered. */
  readonly code: string | null;
}

/** A request the booster answered itself (standby, license gate, database pressure, `/_internal/`): nothing was proxied, its body was not read. */
export class OwnAnswer implements AccessRecord {
  readonly requestId: string;
  readonly traceId: string;
  readonly server = null;
  readonly attempts = 0;
  readonly retries = null;
  readonly queueMs = 0;
  readonly connectMs = null;
  readonly headersMs = null;
  readonly bytesIn = 0;

  constructor(
    readonly req: LoggedRequest,
    readonly epoch: number,
    readonly code: string,
    readonly bytesOut: number,
  ) {
    const h = req.headers;
    this.requestId = first(h[HEADER.requestId]) ?? nextRequestId();
    this.traceId = (parseTraceParent(h[TRACEPARENT]) ?? startTrace()).traceId;
  }
}

/** pino's asynchronous destination (sonic-boom) in buffer mode, which also says when it was closed. */
type Destination = Omit<ReturnType<typeof pino.destination>, 'write'> & { write(bytes: Buffer): boolean; readonly destroyed: boolean };

/** Chunks handed to the destination stay within one atomic pipe write (PIPE_BUF) on the log stream. */
const STREAM_CHUNK = 4096;
/**
 * A file takes a write every thousand lines or so: each is a thread-pool round trip, which on a
 * busy core costs more than copying the bytes (64 KiB chunks made a write every ~150 lines, the
 * largest single item of the log's CPU in the profile).
 */
const FILE_CHUNK = 512 * 1024;
/** The longest a line waits in its chunk before it is handed to the destination. */
const ACCESS_LOG_FLUSH_MS = 200;
/** Bytes the destination may hold while the disk or the journal lags; beyond it lines are dropped and counted. */
const MAX_BUFFERED = 16 * 1024 * 1024;

export class AccessLog {
  #s: AccessLogSettings;
  #sample = 100;
  #credit = 0;
  #dest: Destination | null = null;
  #destFile: string | undefined;
  #chunk: Buffer = Buffer.allocUnsafeSlow(STREAM_CHUNK);
  #chunkUsed = 0;
  #chunkLines = 0;
  /** Date.now() − performance.now(), taken as each chunk starts: a line's time from the timestamp its request ended with. */
  #wallOffset = 0;
  /** Lines in the chunk being handed to the destination (a 'drop' counts them). */
  #handing = 0;
  #flushTimer: NodeJS.Timeout | null = null;
  #warnedAt = 0;
  #closed = false;
  #onUsr1 = false;
  /** Lines the destination could not take (it lagged by more than MAX_BUFFERED). */
  dropped = 0;
  readonly #onReopen = () => this.reopen();
  /** What every JSON line carries after its time, built once. */
  readonly #jsonProcess: string;
  readonly #clfNode: string;

  constructor(
    settings: AccessLogSettings,
    private readonly log: Logger,
    nodeId: string,
  ) {
    this.#s = settings;
    this.#jsonProcess = `","pid":${process.pid},"node":${str(nodeId)},"msg":"access","requestId":`;
    this.#clfNode = ` node=${clf(nodeId)}\n`;
    this.configure(settings);
  }

  /** The hot path's first question: nothing is measured or built for the log while it is off. */
  get on(): boolean {
    return this.#dest !== null;
  }

  get settings(): AccessLogSettings {
    return this.#s;
  }

  /** Applies new settings (at start and on a reload); a new file is opened before the old one is closed. */
  configure(s: AccessLogSettings): void {
    this.#s = s;
    const filtered = s.minStatus > 0 || s.slowMs > 0;
    this.#sample = s.samplePercent ?? (filtered ? 0 : 100);
    const want = s.format !== 'off';
    if (want && this.#dest && this.#destFile === s.file) return;
    const old = this.#dest;
    this.#flushChunk();
    this.#dest = want ? this.#open(s.file) : null;
    this.#destFile = s.file;
    this.#chunk = Buffer.allocUnsafeSlow(s.file ? FILE_CHUNK : STREAM_CHUNK);
    if (old) this.#end(old);
    const reopens = want && s.file !== undefined;
    if (reopens !== this.#onUsr1) {
      this.#onUsr1 = reopens;
      if (reopens) process.on('SIGUSR1', this.#onReopen);
      else process.off('SIGUSR1', this.#onReopen);
    }
  }

  #open(file: string | undefined): Destination {
    const dest = (file
      ? pino.destination({ dest: file, sync: false, mkdir: true, maxLength: MAX_BUFFERED, maxWrite: FILE_CHUNK, contentMode: 'buffer' })
      : pino.destination({ dest: 1, sync: false, maxLength: MAX_BUFFERED, maxWrite: STREAM_CHUNK, contentMode: 'buffer' })) as unknown as Destination;
    dest.on('error', (err: Error) => this.#warn(err, file));
    dest.on('drop', () => {
      this.dropped += this.#handing;
    });
    return dest;
  }

  #warn(err: Error, file: string | undefined): void {
    // A full disk fails every write: one warning a minute, not one per batch.
    const now = Date.now();
    if (now - this.#warnedAt < 60_000) return;
    this.#warnedAt = now;
    this.log.warn({ err, file: file ?? 'stdout' }, 'access log write failed; requests are still served');
  }

  #end(dest: Destination): void {
    try {
      dest.end();
    } catch {
      // Already closed.
    }
  }

  /** Whether a finished request is logged: a filter selects it, or it falls in the sample. */
  wants(status: number, totalMs: number): boolean {
    const s = this.#s;
    if (s.minStatus > 0 && (status >= s.minStatus || status === 0)) return true;
    if (s.slowMs > 0 && totalMs >= s.slowMs) return true;
    if (this.#sample >= 100) return true;
    // A credit counter, not a coin: p % of the requests pass, evenly spread.
    this.#credit += this.#sample;
    if (this.#credit < 100) return false;
    this.#credit -= 100;
    return true;
  }

  /**
   * Logs a finished request (the caller checked `on`); `status` 0: no answer was sent. `endedAt`
   * is its performance.now() when it ended (the time on its line).
   */
  record(r: AccessRecord, status: number, totalMs: number, endedAt = performance.now()): void {
    if (this.#dest === null || !this.wants(status, totalMs)) return;
    if (this.#chunkUsed === 0) this.#wallOffset = Date.now() - endedAt;
    const time = Math.floor(this.#wallOffset + endedAt);
    if (this.#s.format === 'combined') this.#putLine(this.#combined(r, status, totalMs, time));
    else this.#putJson(r, status, totalMs, time);
    if (this.#flushTimer === null) {
      this.#flushTimer = setTimeout(this.#flushLater, ACCESS_LOG_FLUSH_MS);
      this.#flushTimer.unref();
    }
  }

  /** Whether `bytes` more fit in the chunk, which is handed on first when they would not. */
  #room(bytes: number): boolean {
    if (this.#chunkUsed + bytes <= this.#chunk.length) return true;
    this.#flushChunk();
    return bytes <= this.#chunk.length;
  }

  #putLine(line: string): void {
    // A line longer than a chunk (a long URL) goes on its own.
    if (!this.#room(line.length)) {
      this.#hand(Buffer.from(line, 'latin1'), 1);
      return;
    }
    this.#chunkUsed += this.#chunk.write(line, this.#chunkUsed, 'latin1');
    this.#chunkLines++;
  }

  readonly #flushLater = () => {
    this.#flushTimer = null;
    this.#flushChunk();
  };

  #flushChunk(): void {
    if (this.#chunkUsed === 0) return;
    const full = this.#chunk;
    const used = this.#chunkUsed;
    const lines = this.#chunkLines;
    // The destination keeps the bytes until they are written: the next lines go to a new chunk.
    this.#chunk = Buffer.allocUnsafeSlow(full.length);
    this.#chunkUsed = 0;
    this.#chunkLines = 0;
    this.#hand(full.subarray(0, used), lines);
  }

  #hand(bytes: Buffer, lines: number): void {
    if (!this.#dest || this.#dest.destroyed) return;
    this.#handing = lines;
    this.#dest.write(bytes);
    this.#handing = 0;
  }

  #path(url: string): string {
    const q = url.indexOf('?');
    if (q < 0 || this.#s.query === 'keep') return url;
    if (this.#s.query === 'drop') return url.slice(0, q);
    return `${url.slice(0, q + 1)}${url
      .slice(q + 1)
      .split('&')
      .map((p) => {
        const eq = p.indexOf('=');
        return eq < 0 ? p : `${p.slice(0, eq)}=[redacted]`;
      })
      .join('&')}`;
  }

  /**
   * The JSON line, written byte by byte into the chunk, the request's own strings escaped as they
   * are copied. No string is built for the line: a loop that only formats lines is no faster for
   * it, but in the booster under load (bench/booster-profile.ts) the log's share of the CPU was
   * smaller without the garbage of building, flattening and encoding a string per request.
   */
  #putJson(r: AccessRecord, status: number, totalMs: number, time: number): void {
    const req = r.req;
    const requestId = r.requestId;
    const traceId = r.traceId;
    const client = req.socket?.remoteAddress ?? '';
    const method = req.method ?? '';
    const path = this.#path(req.url ?? '/');
    const server = r.server;
    const code = r.code;
    const retries = r.retries;
    // At most: the fixed part, every number at its longest, every character of a string escaped (6 bytes).
    let bound = JSON_FIXED + this.#jsonProcess.length + 6 * (requestId.length + traceId.length + client.length + method.length + path.length);
    if (server !== null) bound += 6 * server.length;
    if (code !== null) bound += 6 * code.length;
    if (retries !== null) for (const x of retries) bound += 32 + 6 * (x.server.length + x.reason.length);
    const inChunk = this.#room(bound);
    const buf = inChunk ? this.#chunk : Buffer.allocUnsafe(bound);
    let at = inChunk ? this.#chunkUsed : 0;
    at = putAscii(buf, at, '{"level":30,"time":"');
    at = putIsoTime(buf, at, time);
    at = putAscii(buf, at, this.#jsonProcess);
    at = putJsonString(buf, at, requestId);
    at = putAscii(buf, at, ',"traceId":');
    at = putJsonString(buf, at, traceId);
    at = putAscii(buf, at, ',"client":');
    at = putJsonString(buf, at, client);
    at = putAscii(buf, at, ',"method":');
    at = putJsonString(buf, at, method);
    at = putAscii(buf, at, ',"path":');
    at = putJsonString(buf, at, path);
    at = putAscii(buf, at, ',"status":');
    at = putNumber(buf, at, status);
    at = putAscii(buf, at, ',"bytesIn":');
    at = putNumber(buf, at, r.bytesIn);
    at = putAscii(buf, at, ',"bytesOut":');
    at = putNumber(buf, at, r.bytesOut);
    at = putAscii(buf, at, ',"server":');
    at = server === null ? putAscii(buf, at, 'null') : putJsonString(buf, at, server);
    at = putAscii(buf, at, ',"attempts":');
    at = putNumber(buf, at, r.attempts);
    if (retries !== null) {
      at = putAscii(buf, at, ',"retries":[');
      for (let k = 0; k < retries.length; k++) {
        at = putAscii(buf, at, k === 0 ? '{"server":' : ',{"server":');
        at = putJsonString(buf, at, retries[k].server);
        at = putAscii(buf, at, ',"reason":');
        at = putJsonString(buf, at, retries[k].reason);
        buf[at++] = 125; // }
      }
      buf[at++] = 93; // ]
    }
    at = putAscii(buf, at, ',"queueMs":');
    at = putMs(buf, at, r.queueMs);
    at = putAscii(buf, at, ',"connectMs":');
    at = putMs(buf, at, r.connectMs);
    at = putAscii(buf, at, ',"headersMs":');
    at = putMs(buf, at, r.headersMs);
    at = putAscii(buf, at, ',"totalMs":');
    at = putMs(buf, at, totalMs);
    at = putAscii(buf, at, ',"epoch":');
    at = putNumber(buf, at, r.epoch);
    at = putAscii(buf, at, ',"code":');
    at = code === null ? putAscii(buf, at, 'null') : putJsonString(buf, at, code);
    buf[at++] = 125; // }
    buf[at++] = 10; // \n
    if (inChunk) {
      this.#chunkUsed = at;
      this.#chunkLines++;
    } else this.#hand(buf.subarray(0, at), 1); // longer than a chunk (a long URL): on its own
  }

  /** NCSA combined, then the same fields as key=value (HAProxy's CLF option does the same). */
  #combined(r: AccessRecord, status: number, totalMs: number, time: number): string {
    const req = r.req;
    const h = req.headers;
    const proto = `HTTP/${req.httpVersionMajor}.${req.httpVersionMinor ?? 0}`;
    const retries = r.retries ? r.retries.map((x) => `${x.server}:${x.reason}`).join(',') : '-';
    return (
      `${req.socket?.remoteAddress ?? '-'} - - [${clfAt(time)}] "${clf(req.method ?? '-')} ${clf(this.#path(req.url ?? '/'))} ${proto}" ${status} ${r.bytesOut}` +
      ` "${clf(first(h.referer) ?? '-')}" "${clf(first(h['user-agent']) ?? '-')}"` +
      ` rid="${clf(r.requestId)}" trace=${r.traceId || '-'} server=${r.server === null ? '-' : clf(r.server)} attempts=${r.attempts} retries=${clf(retries)}` +
      ` in=${r.bytesIn} queue_ms=${ms(r.queueMs)} connect_ms=${ms(r.connectMs, '-')} headers_ms=${ms(r.headersMs, '-')} total_ms=${ms(totalMs)}` +
      ` epoch=${r.epoch} code=${r.code ?? '-'}${this.#clfNode}`
    );
  }

  /** logrotate moved the file away (SIGUSR1): open the path again. */
  reopen(): void {
    if (!this.#dest || !this.#destFile || this.#dest.destroyed) return;
    this.#flushChunk();
    try {
      this.#dest.reopen();
    } catch (err) {
      this.#warn(err as Error, this.#destFile);
    }
  }

  /** Writes what is buffered and closes the file. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    if (this.#onUsr1) process.off('SIGUSR1', this.#onReopen);
    this.#onUsr1 = false;
    const dest = this.#dest;
    this.#flushChunk();
    this.#dest = null;
    if (!dest || dest.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      dest.once('close', () => resolve());
      dest.once('error', () => resolve());
      this.#end(dest);
    });
  }
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

// JSON strings are kept to ASCII (non-ASCII escaped as \u): a line is then copied into its chunk byte for character.
/** Anything but printable ASCII other than `"` and `\\`. */
const NEEDS_ESCAPE = /[^ !#-[\]-~]/;
function str(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** CLF escaping as nginx does: quotes, backslashes, control and non-ASCII bytes as \xHH. */
const CLF_ESCAPE = /[^ !#-[\]-~]/g;
function clf(s: string): string {
  return NEEDS_ESCAPE.test(s)
    ? s.replace(CLF_ESCAPE, (c) => {
        const code = c.charCodeAt(0);
        return code > 0xff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\x${code.toString(16).padStart(2, '0')}`;
      })
    : s;
}

/** The bytes of a JSON line besides its strings and numbers, with room to spare; a number is at most 24 characters. */
const JSON_FIXED = 512 + 9 * 24;

/** Copies a string the caller knows is printable ASCII. */
function putAscii(buf: Buffer, at: number, s: string): number {
  for (let k = 0; k < s.length; k++) buf[at++] = s.charCodeAt(k);
  return at;
}

const HEX_DIGITS = '0123456789abcdef';
/** JSON's short escapes (\b \t \n \f \r), by character code; 0: written as \u00XX. */
const SHORT_ESCAPE = [0, 0, 0, 0, 0, 0, 0, 0, 98, 116, 110, 0, 102, 114];

/** A JSON string, quoted and escaped as JSON.stringify does, and anything beyond ASCII as \uXXXX: the line stays ASCII. */
function putJsonString(buf: Buffer, at: number, s: string): number {
  buf[at++] = 34;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0x20 && c < 0x7f && c !== 34 && c !== 92) {
      buf[at++] = c;
      continue;
    }
    buf[at++] = 92;
    if (c === 34 || c === 92) buf[at++] = c;
    else if (c < 14 && SHORT_ESCAPE[c] !== 0) buf[at++] = SHORT_ESCAPE[c];
    else {
      buf[at++] = 117; // u
      buf[at++] = HEX_DIGITS.charCodeAt(c >> 12);
      buf[at++] = HEX_DIGITS.charCodeAt((c >> 8) & 15);
      buf[at++] = HEX_DIGITS.charCodeAt((c >> 4) & 15);
      buf[at++] = HEX_DIGITS.charCodeAt(c & 15);
    }
  }
  buf[at++] = 34;
  return at;
}

/** A number as String() writes it; a whole number up to 2^53 digit by digit, without a string. */
function putNumber(buf: Buffer, at: number, v: number): number {
  if (!(v >= 0 && v <= 2 ** 53 && Math.floor(v) === v)) return putAscii(buf, at, String(v));
  let len = 1;
  for (let p = 10; p <= v; p *= 10) len++;
  const end = at + len;
  for (let k = end - 1; k >= at; k--) {
    const d = v % 10;
    buf[k] = 48 + d;
    v = (v - d) / 10;
  }
  return end;
}

/** Milliseconds as ms() writes them. */
function putMs(buf: Buffer, at: number, v: number | null): number {
  if (v === null) return putAscii(buf, at, 'null');
  const h = Math.round(v * 100);
  if (!(h >= 0 && h < 1e15)) return putAscii(buf, at, String(h / 100));
  const frac = h % 100;
  at = putNumber(buf, at, (h - frac) / 100);
  if (frac === 0) return at;
  buf[at++] = 46; // .
  buf[at++] = 48 + (frac - (frac % 10)) / 10;
  buf[at++] = 48 + (frac % 10);
  return at;
}

const PAD2 = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));

/**
 * Milliseconds with 0.01 ms resolution (`absent` for null), from integer hundredths: a
 * fractional number's own toString is the costliest step of a line.
 */
function ms(v: number | null, absent = 'null'): string {
  if (v === null) return absent;
  const h = Math.round(v * 100);
  if (!(h >= 0 && h < 1e15)) return String(h / 100);
  const frac = h % 100;
  return frac === 0 ? String(h / 100) : `${(h - frac) / 100}.${PAD2[frac]}`;
}

let isoSecond = -1;
let isoPrefix = '';
/** The time to the millisecond: the date and second built once a second, the milliseconds digit by digit. */
function putIsoTime(buf: Buffer, at: number, now: number): number {
  const second = Math.floor(now / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20);
  }
  at = putAscii(buf, at, isoPrefix);
  const m = now - second * 1000;
  buf[at++] = 48 + Math.floor(m / 100);
  buf[at++] = 48 + (Math.floor(m / 10) % 10);
  buf[at++] = 48 + (m % 10);
  buf[at++] = 90; // Z
  return at;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
let clfSecond = -1;
let clfText = '';
/** 10/Oct/2026:13:55:36 +0000 (UTC), built once a second. */
function clfAt(now: number): string {
  const sec = Math.floor(now / 1000);
  if (sec !== clfSecond) {
    clfSecond = sec;
    const d = new Date(sec * 1000);
    const p = (n: number) => String(n).padStart(2, '0');
    clfText = `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
  }
  return clfText;
}
