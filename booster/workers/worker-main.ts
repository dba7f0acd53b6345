// Entry of a data-plane worker process (forked by the primary through node:cluster, ADR 0010).
// It waits for the primary's init message, then serves the shared listening socket. A worker
// never outlives its primary: when the IPC channel closes (primary stopped or killed), it exits
// at once, so a dead primary's workers never answer with a stale role or epoch.
import { createLogger } from '../../common/log.js';
import type { FromWorker, ToWorker } from './messages.js';
import { type RunningWorker, startDataPlaneWorker } from './worker.js';

const send = (m: FromWorker) => {
  if (process.connected) process.send?.(m);
};
let running: RunningWorker | null = null;

process.on('message', (m: ToWorker) => {
  if (running) return running.onMessage(m);
  if (m.type !== 'init') return;
  const { cluster } = m.config;
  const log = createLogger({ name: 'booster-worker', level: cluster.logLevel, nodeId: cluster.nodeId }).child({ worker: m.index });
  running = startDataPlaneWorker(m, send, log);
  void running.stopped.then(() => process.exit(0));
});
process.on('disconnect', () => process.exit(running ? 1 : 0));
// systemd (KillMode=control-group) and a terminal's Ctrl-C signal the whole group: the primary
// orders the graceful stop, so a worker ignores them; it still exits when the primary is gone.
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => {});
send({ type: 'ready' });
