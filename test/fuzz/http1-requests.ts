import fc from 'fast-check';

/**
 * Generated HTTP/1.x request bytes for the differential fuzzing of the lean front (ADR 0014)
 * against node:http: mostly well-formed requests with the variations real clients and proxies
 * send, mixed with the malformed heads and request-smuggling shapes a strict parser must refuse
 * (CL + TE, duplicate or signed Content-Length, odd Transfer-Encoding lists, obs-fold, bare CR or
 * LF, NUL, spaces around names, bad chunk sizes, truncated bodies, bytes pipelined behind). Each
 * case is a list of byte fragments: written in that many writes, so both parsers also see a head
 * split across reads.
 */
export interface HttpCase {
  /** The bytes, in the writes they are sent in (latin1 strings: one char per byte). */
  writes: string[];
  /**
   * How the client leaves once the bytes are written: it waits (the default: the sentinel request
   * follows, as a keep-alive client's next request), half-closes ('end': FIN, still reading), or
   * goes away ('destroy'). Generated cases wait or half-close; 'destroy' (whose outcome depends on
   * how far the request got) is for corpus entries only.
   */
  close?: 'end' | 'destroy';
}

const pick = <T>(...xs: T[]) => fc.constantFrom(...xs);
const weighted = <T>(...xs: [number, fc.Arbitrary<T>][]) => fc.oneof(...xs.map(([weight, arbitrary]) => ({ weight, arbitrary })));

const METHODS = ['GET', 'GET', 'GET', 'POST', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'];
const ODD_METHODS = ['get', 'CONNECT', 'TRACE', 'PROPFIND', 'M-SEARCH', 'PURGE', 'QUERY', 'PRI', 'FOO', 'G ET', 'GET\t', ''];

const method = weighted([9, pick(...METHODS)], [1, pick(...ODD_METHODS)]);

/** A path segment: letters, the reserved and the percent-encoded, and now and then bytes a URL must not hold. */
const segment = weighted(
  [8, fc.stringMatching(/^[A-Za-z0-9._~-]{1,8}$/)],
  [2, pick('%2F', '%00', '%20', '%zz', '..', '.', '%2e%2e', ';a=b', "!$&'()*+,;=:@", '~user')],
  [1, pick('\x7f', '\xff', '\x80abc', 'a b', 'a\tb', '\x00', '"', '<>', '{}', '|', '\\', '^', '`')],
);
const query = weighted(
  [4, fc.constant('')],
  [2, fc.stringMatching(/^\?[a-z]=[a-z0-9]{0,4}(&[a-z]=[a-z0-9]{0,4}){0,2}$/)],
  [1, pick('?', '??', '?a=%G1', '?a=1#frag', '#frag')],
);
const target = weighted(
  [10, fc.tuple(fc.array(segment, { minLength: 0, maxLength: 4 }), query).map(([s, q]) => `/${s.join('/')}${q}`)],
  [
    1,
    pick(
      '*',
      'http://example.com/abs',
      'https://example.com:443/x?y',
      'example.com:443',
      '//double/slash',
      '',
      '/_booster/no-such-path',
      '/_internal/x',
      '/healthz',
    ),
  ],
);

const version = weighted(
  [12, pick('HTTP/1.1')],
  [3, pick('HTTP/1.0')],
  [1, pick('HTTP/0.9', 'HTTP/2.0', 'HTTP/1.2', 'http/1.1', 'HTTP/1.1 ', 'HTTP/1', 'HTTP/11', 'HTTP/1.10', '')],
);

/** Line ends: CRLF, and sometimes what lenient parsers accept and strict ones refuse. */
const eol = weighted([30, fc.constant('\r\n')], [1, pick('\n', '\r', '\r\r\n', ' \r\n')]);

const tokenName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,14}$/);
const oddName = pick('Bad Name', 'Bad@Name', 'Bad:Name', '', ' Leading', 'Trailing ', 'Ünicode', 'X\x00Y', 'X\tY', '(x)');
const valueText = weighted(
  [8, fc.stringMatching(/^[ -~]{0,24}$/).map((s) => s.trim())],
  [2, pick('', ' padded ', '\tTabbed', 'a,b, c', '"quoted, comma"', 'obs\xe9\xff', 'ctl\x01x', 'del\x7fx', 'a\x00b', 'a\rb', 'a\nb', ' ')],
);

/** One header line (without the line end), with the smuggling-relevant names over-represented. */
const headerLine = weighted(
  [6, fc.tuple(tokenName, valueText).map(([n, v]) => `${n}: ${v}`)],
  [
    2,
    fc
      .tuple(pick('Accept', 'User-Agent', 'Cookie', 'X-Forwarded-For', 'X-Request-Id', 'Idempotency-Key', 'Authorization', 'Accept-Encoding'), valueText)
      .map(([n, v]) => `${n}: ${v}`),
  ],
  [
    2,
    fc
      .tuple(
        pick('Connection', 'connection', 'Keep-Alive', 'Upgrade', 'TE', 'Trailer', 'Proxy-Connection', 'Expect'),
        pick('close', 'keep-alive', 'upgrade', 'Upgrade', 'close, X-Secret', 'websocket', 'h2c', 'trailers', '100-continue', 'nonsense', ''),
      )
      .map(([n, v]) => `${n}: ${v}`),
  ],
  [1, fc.tuple(oddName, valueText).map(([n, v]) => `${n}: ${v}`)],
  [1, pick('NoColon', 'X-Folded: a\r\n b', 'X-Space : a', ' X-Leading: a', 'X-Empty:', 'X-Nospace:a', ':empty-name')],
);

interface Framing {
  headers: string[];
  body: string;
}

const bodyBytes = (n: number) => fc.stringMatching(new RegExp(`^[\\x00-\\xff]{${n}}$`));
const smallLength = fc.nat({ max: 40 });

/** How the body is framed (or mis-framed) and the bytes that follow the head. */
const framing: fc.Arbitrary<Framing> = weighted<Framing>(
  [8, fc.constant({ headers: [], body: '' })],
  // Content-Length, with the body as long as it says, shorter (truncated) or longer (bytes behind).
  [
    6,
    fc
      .tuple(smallLength, pick(0, 0, 0, -3, 5))
      .chain(([n, skew]) => bodyBytes(Math.max(0, n + skew)).map((b) => ({ headers: [`Content-Length: ${n}`], body: b }))),
  ],
  // Odd Content-Length spellings.
  [
    2,
    fc.tuple(smallLength, pick('+', '-', '0', ' ', '0x', '', '1e1', '4, 4', '4,5')).chain(([n, how]) =>
      bodyBytes(n).map((b) => {
        const v = how === '4, 4' || how === '4,5' ? how : how === '0' ? `00${n}` : how === ' ' ? ` ${n} ` : `${how}${n}`;
        return { headers: [`Content-Length: ${v}`], body: b };
      }),
    ),
  ],
  [1, fc.tuple(smallLength, smallLength).chain(([a, b]) => bodyBytes(a).map((body) => ({ headers: [`Content-Length: ${a}`, `Content-Length: ${b}`], body })))],
  // Chunked: valid, with extensions and trailers, and broken.
  [
    4,
    fc
      .tuple(
        fc.array(fc.nat({ max: 20 }), { maxLength: 3 }),
        pick('', ';ext=1', ';e', ' ;x'),
        pick('', 'X-Trailer: t\r\n', 'Content-Length: 5\r\n'),
        pick('0\r\n', '0\r\n', '00\r\n', '0;last\r\n', ''),
        pick('\r\n', '\r\n', '', '\n'),
      )
      .chain(([sizes, ext, trailer, last, end]) =>
        fc.tuple(...sizes.map((n) => bodyBytes(n))).map((parts) => ({
          headers: ['Transfer-Encoding: chunked'],
          body: `${parts.map((p) => `${p.length.toString(16)}${ext}\r\n${p}\r\n`).join('')}${last}${trailer}${end}`,
        })),
      ),
  ],
  [
    1,
    pick('-1', '0x5', ' 5', '5 ', 'fffffffffffffffff', 'g', '5\r\nabc').map((size) => ({
      headers: ['Transfer-Encoding: chunked'],
      body: `${size}\r\nabcde\r\n0\r\n\r\n`,
    })),
  ],
  // Transfer-Encoding lists and spellings; CL and TE together.
  [
    2,
    pick('chunked, gzip', 'gzip, chunked', 'Chunked', ' chunked', 'chunked ', 'identity', 'xchunked', 'chunked, chunked', 'gzip').map((te) => ({
      headers: [`Transfer-Encoding: ${te}`],
      body: '5\r\nabcde\r\n0\r\n\r\n',
    })),
  ],
  [
    2,
    pick(0, 1).map((order) => ({
      headers: order ? ['Transfer-Encoding: chunked', 'Content-Length: 4'] : ['Content-Length: 4', 'Transfer-Encoding: chunked'],
      body: '0\r\n\r\n',
    })),
  ],
  [1, fc.constant({ headers: ['Transfer-Encoding: chunked', 'Transfer-Encoding: gzip'], body: '0\r\n\r\n' })],
);

/** Host: once (the rule), and sometimes missing, repeated, empty or odd. */
const hostHeaders = weighted<string[]>(
  [12, pick(['Host: example.com'], ['Host: 127.0.0.1:8080'], ['host: a'], ['HOST: b.example'])],
  [2, pick([], ['Host:'], ['Host: a', 'Host: b'], ['Host: a', 'Host: a'], ['Host: a b'], ['Host: [::1]:80'], ['Host: a/b'], ['Host: a@b'])],
);

/** A simple request pipelined behind the case: what a smuggled request would look like. */
const follower = weighted(
  [6, fc.constant('')],
  [2, pick('GET /next HTTP/1.1\r\nHost: x\r\n\r\n', 'POST /next HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok')],
  [1, fc.constant('GET /n1 HTTP/1.1\r\nHost: x\r\n\r\nGET /n2 HTTP/1.1\r\nHost: x\r\n\r\n')],
);

/** One generated request, as the writes that carry it. */
export const httpCase: fc.Arbitrary<HttpCase> = fc
  .record({
    method,
    target,
    version,
    eol,
    host: hostHeaders,
    headers: fc.array(headerLine, { maxLength: 5 }),
    framing,
    hostFirst: fc.boolean(),
    follower,
    splits: fc.array(fc.nat({ max: 400 }), { maxLength: 2 }),
    halfClose: weighted([4, fc.constant(false)], [1, fc.constant(true)]),
  })
  .map((r) => {
    const lines = r.hostFirst ? [...r.host, ...r.headers, ...r.framing.headers] : [...r.headers, ...r.framing.headers, ...r.host];
    const requestLine = r.version === '' ? `${r.method} ${r.target}` : `${r.method} ${r.target} ${r.version}`;
    const bytes = `${requestLine}${r.eol}${lines.map((l) => `${l}${r.eol}`).join('')}${r.eol}${r.framing.body}${r.follower}`;
    // Split points inside the bytes: a head across several reads.
    const cuts = [...new Set(r.splits.map((s) => s % Math.max(1, bytes.length)).filter((s) => s > 0))].sort((a, b) => a - b);
    const writes: string[] = [];
    let from = 0;
    for (const c of cuts) {
      writes.push(bytes.slice(from, c));
      from = c;
    }
    writes.push(bytes.slice(from));
    return r.halfClose ? { writes, close: 'end' as const } : { writes };
  });
