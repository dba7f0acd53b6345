import { connect, type TLSSocket } from 'node:tls';

/**
 * HTTP/2 frames written by hand over a TLS socket (RFC 9113), for what no tool sends on purpose:
 * a flood of resets, SETTINGS or PINGs, a header block that never ends, more streams than the
 * server allows. HPACK is the small part a request needs: static-table fields and literals
 * without indexing or Huffman coding; of an answer only the :status is read.
 */
export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, CANCEL: 8, REFUSED_STREAM: 7, ENHANCE_YOUR_CALM: 11 } as const;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an n-bit prefix (RFC 7541 5.1). */
function hpackInt(value: number, prefixBits: number, firstByteFlags: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteFlags | value]);
  const out = [firstByteFlags | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/** A literal field without indexing, its name taken from the static table (RFC 7541 6.2.2). */
function literal(nameIndex: number, value: string): Buffer {
  const v = Buffer.from(value, 'latin1');
  return Buffer.concat([hpackInt(nameIndex, 4, 0x00), hpackInt(v.length, 7, 0x00), v]);
}

/** A literal field without indexing with a new name. */
export function literalNamed(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  return Buffer.concat([Buffer.from([0x00]), hpackInt(n.length, 7, 0x00), n, hpackInt(v.length, 7, 0x00), v]);
}

/** The header block of a request: GET (or POST) https, the path and authority, and extra fields. */
export function requestBlock(path: string, authority: string, opts: { method?: 'GET' | 'POST'; extra?: [string, string][] } = {}): Buffer {
  return Buffer.concat([
    Buffer.from([opts.method === 'POST' ? 0x83 : 0x82, 0x87]), // :method, :scheme https (static table 2/3 and 7)
    literal(4, path), // :path
    literal(1, authority), // :authority
    ...(opts.extra ?? []).map(([n, v]) => literalNamed(n, v)),
  ]);
}

/** Huffman codes of the digits (RFC 7541 appendix B): enough to read a :status. */
const DIGIT_CODES: [string, number, number][] = [
  ['0', 0x0, 5],
  ['1', 0x1, 5],
  ['2', 0x2, 5],
  ['3', 0x19, 6],
  ['4', 0x1a, 6],
  ['5', 0x1b, 6],
  ['6', 0x1c, 6],
  ['7', 0x1d, 6],
  ['8', 0x1e, 6],
  ['9', 0x1f, 6],
];
function huffmanDigits(bytes: Buffer): string {
  let bits = '';
  for (const b of bytes) bits += b.toString(2).padStart(8, '0');
  let out = '';
  let i = 0;
  outer: while (i < bits.length) {
    for (const [ch, code, len] of DIGIT_CODES) {
      if (i + len <= bits.length && bits.slice(i, i + len) === code.toString(2).padStart(len, '0')) {
        out += ch;
        i += len;
        continue outer;
      }
    }
    break; // padding (all ones)
  }
  return out;
}

const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };

/** The :status of a response header block (the server sends it first). 0 when it cannot be read. */
export function statusOf(block: Buffer): number {
  const b = block[0];
  if (b & 0x80) return STATIC_STATUS[b & 0x7f] ?? 0;
  // Literal with the name :status (index 8), whichever indexing kind (6.2.1, 6.2.2, 6.2.3).
  const prefix = b & 0x40 ? 6 : 4;
  if ((b & ((1 << prefix) - 1)) !== 8) return 0;
  const huffman = (block[1] & 0x80) !== 0;
  const len = block[1] & 0x7f;
  const value = block.subarray(2, 2 + len);
  return Number(huffman ? huffmanDigits(value) : value.toString('latin1')) || 0;
}

export interface WireOutcome {
  /** GOAWAY from the server: its error code. */
  goaway: number | null;
  /** RST_STREAM from the server, by error code. */
  resets: Map<number, number>;
  /** Response HEADERS from the server, by :status. */
  statuses: Map<number, number>;
  pingAcks: number;
  settingsAcks: number;
  /** The server closed the connection (or it broke). */
  closed: boolean;
  bytesSent: number;
}

/** One HTTP/2 connection over TLS (ALPN h2) that writes whatever it is given and counts what comes back. */
export class H2Wire {
  readonly out: WireOutcome = { goaway: null, resets: new Map(), statuses: new Map(), pingAcks: 0, settingsAcks: 0, closed: false, bytesSent: 0 };
  #buf: Buffer = Buffer.alloc(0);
  #closedWaiters: (() => void)[] = [];

  private constructor(readonly socket: TLSSocket) {
    socket.on('data', (d: Buffer) => this.#read(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.out.closed = true;
      for (const w of this.#closedWaiters.splice(0)) w();
    });
  }

  static open(port: number): Promise<H2Wire> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1', servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['h2'] });
      socket.once('error', reject);
      socket.once('secureConnect', () => {
        if (socket.alpnProtocol !== 'h2') return reject(new Error(`ALPN chose ${socket.alpnProtocol}`));
        const wire = new H2Wire(socket);
        wire.socket.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
        resolve(wire);
      });
    });
  }

  /** Writes, waiting for the socket to drain when it asks to (a flood stays bounded in memory). */
  async send(bytes: Buffer): Promise<boolean> {
    if (this.socket.destroyed || this.out.closed) return false;
    this.out.bytesSent += bytes.length;
    if (this.socket.write(bytes)) return true;
    await new Promise<void>((r) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        r();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
    return !this.out.closed;
  }

  /** Resolves when the server closed the connection, or after ms (false then). */
  closedWithin(ms: number): Promise<boolean> {
    if (this.out.closed) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      this.#closedWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  #read(d: Buffer): void {
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, d]) : d;
    while (this.#buf.length >= 9) {
      const len = this.#buf.readUIntBE(0, 3);
      if (this.#buf.length < 9 + len) break;
      const type = this.#buf[3];
      const flags = this.#buf[4];
      const payload = this.#buf.subarray(9, 9 + len);
      this.#buf = this.#buf.subarray(9 + len);
      if (type === FRAME.SETTINGS) {
        if (flags & FLAG.ACK) this.out.settingsAcks++;
        else this.socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      } else if (type === FRAME.PING && flags & FLAG.ACK) this.out.pingAcks++;
      else if (type === FRAME.GOAWAY) this.out.goaway = payload.readUInt32BE(4);
      else if (type === FRAME.RST_STREAM) {
        const code = payload.readUInt32BE(0);
        this.out.resets.set(code, (this.out.resets.get(code) ?? 0) + 1);
      } else if (type === FRAME.HEADERS) {
        const status = statusOf(payload);
        this.out.statuses.set(status, (this.out.statuses.get(status) ?? 0) + 1);
      }
    }
  }
}
