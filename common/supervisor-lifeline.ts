import { Socket } from 'node:net';

/**
 * The lifeline between a supervisor and the process it starts (ADR 0022): the supervisor passes
 * one end of a socket pair as file descriptor 3 and names it in OMFLOW_SUPERVISOR_FD; it never
 * writes to it. When the supervisor exits for any reason — SIGKILL and a crash included — the
 * kernel closes its end, the child reads end-of-file and stops itself as for SIGTERM. So a
 * supervised process never outlives its supervisor, without relying on signals that a killed
 * process can no longer send.
 */
export const SUPERVISOR_FD_ENV = 'OMFLOW_SUPERVISOR_FD';
const LIFELINE_FD = 3;

/** What a supervisor adds to spawn(): the pipe as fd 3 after stdin/stdout/stderr, and its name. */
export function lifelineSpawn<S extends readonly unknown[]>(stdio: S, env: Record<string, string | undefined>) {
  if (stdio.length !== LIFELINE_FD) throw new Error('the lifeline is file descriptor 3: give exactly stdin, stdout and stderr');
  return { stdio: [...stdio, 'pipe'] as [...S, 'pipe'], env: { ...env, [SUPERVISOR_FD_ENV]: String(LIFELINE_FD) } };
}

/**
 * In the supervised process: resolves once the supervisor is gone. Null when none was named
 * (started by hand or by systemd). The read end is unref'd: it never keeps the process alive.
 */
export function supervisorGone(env: Record<string, string | undefined>): Promise<void> | null {
  const fd = Number(env[SUPERVISOR_FD_ENV]);
  if (!Number.isInteger(fd) || fd < LIFELINE_FD) return null;
  let line: Socket;
  try {
    line = new Socket({ fd, readable: true, writable: false });
  } catch {
    return null; // not an open socket (a stale variable inherited from elsewhere)
  }
  line.unref();
  return new Promise<void>((resolve) => {
    line.on('data', () => {}); // nothing is ever sent; reading is what notices end-of-file
    line.once('end', resolve);
    line.once('close', resolve);
    line.once('error', resolve);
  });
}
