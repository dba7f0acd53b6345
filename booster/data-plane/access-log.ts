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
 * flush=`: a request copies its line into a chunk buffer (the lines are ASCII, so one byte per
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
const FILE_CHUNK = 64 * 1024;
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
      ? pino.destination({ dest: file, sync: false, mkdir: true, maxLength: MAX_BUFFERED, maxWrite: FILE_CHUNK * 2, contentMode: 'buffer' })
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

  /** Logs a finished request (the caller checked `on`); `status` 0: no answer was sent. */
  record(r: AccessRecord, status: number, totalMs: number): void {
    if (this.#dest === null || !this.wants(status, totalMs)) return;
    const line = this.#s.format === 'combined' ? this.#combined(r, status, totalMs) : this.#json(r, status, totalMs);
    if (this.#chunkUsed + line.length > this.#chunk.length) {
      this.#flushChunk();
      // A line longer than a chunk (a long URL) goes on its own.
      if (line.length > this.#chunk.length) {
        this.#hand(Buffer.from(line, 'latin1'), 1);
        return;
      }
    }
    this.#chunkUsed += this.#chunk.write(line, this.#chunkUsed, 'latin1');
    this.#chunkLines++;
    if (this.#flushTimer === null) {
      this.#flushTimer = setTimeout(this.#flushLater, ACCESS_LOG_FLUSH_MS);
      this.#flushTimer.unref();
    }
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

  #json(r: AccessRecord, status: number, totalMs: number): string {
    const req = r.req;
    let retries = '';
    if (r.retries) retries = `,"retries":[${r.retries.map((x) => `{"server":${str(x.server)},"reason":${str(x.reason)}}`).join(',')}]`;
    return (
      `{"level":30,"time":"${isoNow()}${this.#jsonProcess}${str(r.requestId)},"traceId":${str(r.traceId)},"client":${str(req.socket?.remoteAddress ?? '')}` +
      `,"method":${str(req.method ?? '')},"path":${str(this.#path(req.url ?? '/'))},"status":${status}` +
      `,"bytesIn":${r.bytesIn},"bytesOut":${r.bytesOut},"server":${r.server === null ? 'null' : str(r.server)},"attempts":${r.attempts}${retries}` +
      `,"queueMs":${ms(r.queueMs)},"connectMs":${ms(r.connectMs, 'null')},"headersMs":${ms(r.headersMs, 'null')},"totalMs":${ms(totalMs)}` +
      `,"epoch":${r.epoch},"code":${r.code === null ? 'null' : str(r.code)}}\n`
    );
  }

  /** NCSA combined, then the same fields as key=value (HAProxy's CLF option does the same). */
  #combined(r: AccessRecord, status: number, totalMs: number): string {
    const req = r.req;
    const h = req.headers;
    const proto = `HTTP/${req.httpVersionMajor}.${req.httpVersionMinor ?? 0}`;
    const retries = r.retries ? r.retries.map((x) => `${x.server}:${x.reason}`).join(',') : '-';
    return (
      `${req.socket?.remoteAddress ?? '-'} - - [${clfNow()}] "${clf(req.method ?? '-')} ${clf(this.#path(req.url ?? '/'))} ${proto}" ${status} ${r.bytesOut}` +
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

const PAD2 = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));
const PAD3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));

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
/** The completion time to the millisecond: the date and second built once a second, the milliseconds from a table. */
function isoNow(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20);
  }
  return `${isoPrefix}${PAD3[now - second * 1000]}Z`;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
let clfAt = 0;
let clfText = '';
/** 10/Oct/2026:13:55:36 +0000 (UTC), built once a second. */
function clfNow(): string {
  const sec = Math.floor(Date.now() / 1000);
  if (sec !== clfAt) {
    clfAt = sec;
    const d = new Date(sec * 1000);
    const p = (n: number) => String(n).padStart(2, '0');
    clfText = `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
  }
  return clfText;
}
