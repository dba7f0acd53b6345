import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { boostersArea, clusterArea, databaseArea, serverArea } from '../../common/config/areas/index.js';
import { loadConfig } from '../../common/config/load.js';
import type { ServerConfig } from '../../server/config.js';

export const OMFLOW = fileURLToPath(new URL('../../common/bin/omflow.mjs', import.meta.url));
export const SECRET = 'test-cluster-secret-0123456789';

export function serverConfig(dbUrl: string, env: Record<string, string> = {}): ServerConfig {
  return loadConfig([clusterArea, databaseArea, boostersArea, serverArea], {
    env: { OMFLOW_DB_URL: dbUrl, OMFLOW_CLUSTER_SECRET: SECRET, OMFLOW_NODE_ID: 'test-node', OMFLOW_LOG_LEVEL: 'silent', OMFLOW_SERVER_PORT: '0', ...env },
  });
}

export { runOmflow as runCli } from '../helpers/processes.js';

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  output: () => string;
  /** SIGTERM, then waits for exit (SIGKILL after 15 s). Resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `omflow server` as a real child process and waits until /healthz answers. */
export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(process.execPath, [OMFLOW, 'server'], {
    env: { PATH: process.env.PATH, OMFLOW_CLUSTER_SECRET: SECRET, OMFLOW_LOG_LEVEL: 'warn', OMFLOW_SERVER_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`server did not start:\n${out}`)), 30_000);
    const onData = () => {
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(deadline);
        resolve(m[1]);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', () => {
      clearTimeout(deadline);
      reject(new Error(`server exited:\n${out}`));
    });
  });
  return {
    child,
    url,
    output: () => out,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(kill);
      return code;
    },
  };
}
