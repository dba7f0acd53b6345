import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * One logger per process. Credentials never reach the log: authorization, cookies and
 * cluster signatures are redacted wherever they appear. Log errors as objects
 * (`log.warn({ err }, 'msg')`), never interpolated into the message.
 */
export function createLogger(opts: { name: string; level: string; nodeId?: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      name: opts.name,
      level: opts.level,
      base: { pid: process.pid, node: opts.nodeId },
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers.cookie',
          'req.headers["x-omflow-signature"]',
          'headers.authorization',
          'headers.cookie',
          '*.password',
          'password',
          '*.secret',
          'secret',
        ],
        censor: '[redacted]',
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination,
  );
}
