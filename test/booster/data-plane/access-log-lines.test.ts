import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { AccessLog, type AccessLogSettings, type AccessRecord } from '../../../booster/data-plane/access-log.js';
import { silentLog } from '../fixtures.js';

/**
 * The access log's lines, byte for byte: the JSON and combined lines of a set of requests
 * (escaping, absent phases, retries, query redaction, numbers of every size) as the per-line
 * formatter that came before the batch formatter wrote them. A change to the formatter must
 * write the same bytes, or change these lines on purpose.
 */
const dir = mkdtempSync(join(tmpdir(), 'omflow-access-lines-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());
let seq = 0;

type Req = AccessRecord['req'];
const req = (over: Partial<Req> = {}): Req => ({
  method: 'GET',
  url: '/',
  httpVersionMajor: 1,
  httpVersionMinor: 1,
  socket: { remoteAddress: '127.0.0.1' },
  headers: {},
  ...over,
});
const base: AccessRecord = {
  req: req(),
  requestId: 'b-1-a',
  traceId: '0af7651916cd43dd8448eb211c80319c',
  epoch: 3,
  server: 'app-1',
  attempts: 1,
  retries: null,
  queueMs: 0,
  connectMs: 0.031,
  headersMs: 0.4149,
  bytesIn: 0,
  bytesOut: 13,
  code: null,
};

/** [record, status, totalMs, milliseconds since the first record] */
const cases: [AccessRecord, number, number, number][] = [
  [base, 200, 0.61, 0],
  [
    {
      ...base,
      req: req({ method: 'POST', url: '/submit?token=abc&page=2&flag', headers: { 'user-agent': 'wrk', referer: 'http://x/a?b' } }),
      bytesIn: 1024,
      requestId: 'client "id" \\ x',
    },
    201,
    12.345,
    1,
  ],
  [{ ...base, req: req({ url: '/é/ü?q=日本', headers: { 'user-agent': ['a\tb', 'c'] } }), requestId: 'ctl\u0001\n\r\u007f' }, 404, 1000, 999],
  [
    {
      ...base,
      retries: [
        { server: 'app-2', reason: 'connect' },
        { server: 'app "3"', reason: 'status' },
      ],
      attempts: 3,
      server: 'app-1',
      queueMs: 5.005,
    },
    502,
    1234567.891,
    1000,
  ],
  [{ ...base, server: null, attempts: 0, connectMs: null, headersMs: null, code: 'BOOSTER_ERR_NO_SERVER', bytesOut: 87, epoch: 0 }, 503, 0, 1001],
  [
    { ...base, req: req({ method: undefined, url: undefined, socket: null, httpVersionMajor: 2, httpVersionMinor: undefined }), traceId: '' },
    0,
    30_000.004,
    59_999,
  ],
  [{ ...base, bytesIn: 5_000_000_000, bytesOut: 2 ** 53, epoch: 123_456_789, connectMs: 0.005, headersMs: 0.995 }, 200, 0.999, 86_400_000],
  [{ ...base, req: req({ url: `/${'ü'.repeat(3)}"\\` }), server: 'svc\u2028', code: 'BOOSTER_ERR_UPSTREAM' }, 500, 1e-7, 86_400_001],
];

/** Writes the cases through an access log with these settings and returns the file's text. */
async function linesOf(s: Partial<AccessLogSettings>): Promise<string> {
  const t0 = Date.UTC(2026, 9, 10, 13, 55, 36, 7);
  let now = t0;
  vi.spyOn(Date, 'now').mockImplementation(() => now);
  const file = join(dir, `lines-${++seq}.log`);
  const log = new AccessLog({ format: 'json', file, minStatus: 0, slowMs: 0, query: 'keep', ...s }, silentLog, 'node "a"');
  for (const [r, status, total, at] of cases) {
    now = t0 + at;
    log.record(r, status, total, at);
  }
  await log.close();
  return readFileSync(file, 'latin1');
}

/** The lines as one file's text, this process's pid in each JSON line. */
const fileOf = (lines: string[]) => `${lines.map((l) => l.replace('"pid":1,', `"pid":${process.pid},`)).join('\n')}\n`;

describe('access log lines', () => {
  it('JSON: the same bytes as the per-line formatter wrote', async () => {
    const text = await linesOf({ format: 'json' });
    expect(text).toBe(fileOf(JSON_LINES));
    // Every line parses, and the file is ASCII only.
    for (const l of text.split('\n').filter(Boolean)) JSON.parse(l);
    expect(/^[\n\x20-\x7e]*$/.test(text)).toBe(true);
  });

  it('JSON with the query redacted or dropped', async () => {
    const redacted = (await linesOf({ format: 'json', query: 'redact' })).split('\n');
    expect(JSON.parse(redacted[1]).path).toBe('/submit?token=[redacted]&page=[redacted]&flag');
    expect(JSON.parse(redacted[2]).path).toBe('/é/ü?q=[redacted]');
    const dropped = (await linesOf({ format: 'json', query: 'drop' })).split('\n');
    expect(JSON.parse(dropped[1]).path).toBe('/submit');
  });

  it('combined: the same bytes as the per-line formatter wrote', async () => {
    const text = await linesOf({ format: 'combined', query: 'redact' });
    expect(text).toBe(fileOf(COMBINED_LINES));
    expect(/^[\n\x20-\x7e]*$/.test(text)).toBe(true);
  });
});

const JSON_LINES = [
  String.raw`{"level":30,"time":"2026-10-10T13:55:36.007Z","pid":1,"node":"node \"a\"","msg":"access","requestId":"b-1-a","traceId":"0af7651916cd43dd8448eb211c80319c","client":"127.0.0.1","method":"GET","path":"/","status":200,"bytesIn":0,"bytesOut":13,"server":"app-1","attempts":1,"queueMs":0,"connectMs":0.03,"headersMs":0.41,"totalMs":0.61,"epoch":3,"code":null}`,
  String.raw`{"level":30,"time":"2026-10-10T13:55:36.008Z","pid":1,"node":"node \"a\"","msg":"access","requestId":"client \"id\" \\ x","traceId":"0af7651916cd43dd8448eb211c80319c","client":"127.0.0.1","method":"POST","path":"/submit?token=abc&page=2&flag","status":201,"bytesIn":1024,"bytesOut":13,"server":"app-1","attempts":1,"queueMs":0,"connectMs":0.03,"headersMs":0.41,"totalMs":12.35,"epoch":3,"code":null}`,
  String.raw`{"level":30,"time":"2026-10-10T13:55:37.006Z","pid":1,"node":"node \"a\"","msg":"access","requestId":"ctl\u0001\n\r\u007f","traceId":"0af7651916cd43dd8448eb211c80319c","client":"127.0.0.1","method":"GET","path":"/\u00e9/\u00fc?q=\u65e5\u672c","status":404,"bytesIn":0,"bytesOut":13,"server":"app-1","attempts":1,"queueMs":0,"connectMs":0.03,"headersMs":0.41,"totalMs":1000,"epoch":3,"code":null}`,
  String.raw`{"level":30,"time":"2026-10-10T13:55:37.007Z","pid":1,"node":"node \"a\"","msg":"access","requestId":"b-1-a","traceId":"0af7651916cd43dd8448eb211c80319c","client":"127.0.0.1","method":"GET","path":"/","status":502,"bytesIn":0,"bytesOut":13,"server":"app-1","attempts":3,"retries":[{"server":"app-2","reason":"connect"},{"server":"app \"3\"","reason":"status"}],"queueMs":5.01,"connectMs":0.03,"headersMs":0.41,"totalMs":1234567.89,"epoch":3,"code":null}`,
  String.raw`{"level":30,"time":"2026-10-10T13:55:37.008Z","pid":1,"node":"node \"a\"","msg":"access","requestId":"b-1-a","traceId":"0af7651916cd43dd8448eb211c80319c","client":"127.0.0.1","method":"GET","path":"/","status":503,"bytesIn":0,"bytesOut":87,"server":null,"attempts":0,"queueMs":0,"connectMs":null,"headersMs":null,"totalMs":0,"epoch":0,"code":"BOOSTER_ERR_NO_SERVER"}`,
  String.raw`{"level":30,"time":"2026-10-10T13:56:36.006Z","pid":1,"node":"node \"a\"","msg":"access","requestId":"b-1-a","traceId":"","client":"","method":"","path":"/","status":0,"bytesIn":0,"bytesOut":13,"server":"app-1","attempts":1,"queueMs":0,"connectMs":0.03,"headersMs":0.41,"totalMs":30000,"epoch":3,"code":null}`,
  String.raw`{"level":30,"time":"2026-10-11T13:55:36.007Z","pid":1,"node":"node \"a\"","msg":"access","requestId":"b-1-a","traceId":"0af7651916cd43dd8448eb211c80319c","client":"127.0.0.1","method":"GET","path":"/","status":200,"bytesIn":5000000000,"bytesOut":9007199254740992,"server":"app-1","attempts":1,"queueMs":0,"connectMs":0.01,"headersMs":1,"totalMs":1,"epoch":123456789,"code":null}`,
  String.raw`{"level":30,"time":"2026-10-11T13:55:36.008Z","pid":1,"node":"node \"a\"","msg":"access","requestId":"b-1-a","traceId":"0af7651916cd43dd8448eb211c80319c","client":"127.0.0.1","method":"GET","path":"/\u00fc\u00fc\u00fc\"\\","status":500,"bytesIn":0,"bytesOut":13,"server":"svc\u2028","attempts":1,"queueMs":0,"connectMs":0.03,"headersMs":0.41,"totalMs":0,"epoch":3,"code":"BOOSTER_ERR_UPSTREAM"}`,
];
const COMBINED_LINES = [
  String.raw`127.0.0.1 - - [10/Oct/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 13 "-" "-" rid="b-1-a" trace=0af7651916cd43dd8448eb211c80319c server=app-1 attempts=1 retries=- in=0 queue_ms=0 connect_ms=0.03 headers_ms=0.41 total_ms=0.61 epoch=3 code=- node=node \x22a\x22`,
  String.raw`127.0.0.1 - - [10/Oct/2026:13:55:36 +0000] "POST /submit?token=[redacted]&page=[redacted]&flag HTTP/1.1" 201 13 "http://x/a?b" "wrk" rid="client \x22id\x22 \x5c x" trace=0af7651916cd43dd8448eb211c80319c server=app-1 attempts=1 retries=- in=1024 queue_ms=0 connect_ms=0.03 headers_ms=0.41 total_ms=12.35 epoch=3 code=- node=node \x22a\x22`,
  String.raw`127.0.0.1 - - [10/Oct/2026:13:55:37 +0000] "GET /\xe9/\xfc?q=[redacted] HTTP/1.1" 404 13 "-" "a\x09b" rid="ctl\x01\x0a\x0d\x7f" trace=0af7651916cd43dd8448eb211c80319c server=app-1 attempts=1 retries=- in=0 queue_ms=0 connect_ms=0.03 headers_ms=0.41 total_ms=1000 epoch=3 code=- node=node \x22a\x22`,
  String.raw`127.0.0.1 - - [10/Oct/2026:13:55:37 +0000] "GET / HTTP/1.1" 502 13 "-" "-" rid="b-1-a" trace=0af7651916cd43dd8448eb211c80319c server=app-1 attempts=3 retries=app-2:connect,app \x223\x22:status in=0 queue_ms=5.01 connect_ms=0.03 headers_ms=0.41 total_ms=1234567.89 epoch=3 code=- node=node \x22a\x22`,
  String.raw`127.0.0.1 - - [10/Oct/2026:13:55:37 +0000] "GET / HTTP/1.1" 503 87 "-" "-" rid="b-1-a" trace=0af7651916cd43dd8448eb211c80319c server=- attempts=0 retries=- in=0 queue_ms=0 connect_ms=- headers_ms=- total_ms=0 epoch=0 code=BOOSTER_ERR_NO_SERVER node=node \x22a\x22`,
  String.raw`- - - [10/Oct/2026:13:56:36 +0000] "- / HTTP/2.0" 0 13 "-" "-" rid="b-1-a" trace=- server=app-1 attempts=1 retries=- in=0 queue_ms=0 connect_ms=0.03 headers_ms=0.41 total_ms=30000 epoch=3 code=- node=node \x22a\x22`,
  String.raw`127.0.0.1 - - [11/Oct/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 9007199254740992 "-" "-" rid="b-1-a" trace=0af7651916cd43dd8448eb211c80319c server=app-1 attempts=1 retries=- in=5000000000 queue_ms=0 connect_ms=0.01 headers_ms=1 total_ms=1 epoch=123456789 code=- node=node \x22a\x22`,
  String.raw`127.0.0.1 - - [11/Oct/2026:13:55:36 +0000] "GET /\xfc\xfc\xfc\x22\x5c HTTP/1.1" 500 13 "-" "-" rid="b-1-a" trace=0af7651916cd43dd8448eb211c80319c server=svc\u2028 attempts=1 retries=- in=0 queue_ms=0 connect_ms=0.03 headers_ms=0.41 total_ms=0 epoch=3 code=BOOSTER_ERR_UPSTREAM node=node \x22a\x22`,
];
