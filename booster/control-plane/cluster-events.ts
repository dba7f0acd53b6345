import type { Logger } from '../../common/log.js';
import type { Transition } from '../server-table/server-table.js';
import type { ClusterStore } from './cluster-store.js';

/**
 * The booster_events log that `/_booster/events` and `omflow status` show: each entry names this
 * booster and its epoch. Only the active writes server transitions (the log holds each one once);
 * a write that fails is a WARN, never a failed caller.
 */
export interface ClusterEvents {
  record(kind: string, subject: string | null, details?: unknown): Promise<void>;
  /** A server changed state: `server-up`, `-down`, `-ejected`, `-drained` or `-undrained`. */
  serverTransition(t: Transition): Promise<void>;
}

export function createClusterEvents(d: { store: ClusterStore; nodeId: string; epoch: () => number; log: Logger }): ClusterEvents {
  const record = (kind: string, subject: string | null, details?: unknown) =>
    d.store
      .recordEvent({ boosterId: d.nodeId, epoch: d.epoch(), kind, subject, details })
      .catch((err) => d.log.warn({ err, kind }, 'could not record booster event'));
  return {
    record,
    serverTransition: (t) => record(serverEventKind(t), t.server.id, { from: t.from, reason: t.reason }),
  };
}

function serverEventKind(t: Transition): string {
  switch (t.to) {
    case 'up':
      return t.from === 'draining' ? 'server-undrained' : 'server-up';
    case 'down':
      return 'server-down';
    case 'ejected':
      return 'server-ejected';
    case 'draining':
      return 'server-drained';
  }
}
