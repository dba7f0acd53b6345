import type { agentArea } from '../config/areas/agent.js';
import type { AreaValues } from '../config/define.js';
import { createClusterClient } from '../protocol/cluster-client.js';
import { BOOSTER_PATH } from '../protocol/headers.js';
import type { PatchNotice } from '../protocol/messages.js';
import { loadTrustedKeys, type TrustedKeys } from './keys.js';
import type { TarLimits } from './tar.js';

type AgentConfig = AreaValues<(typeof agentArea)['keys']>;

export function limitsFromConfig(cfg: Pick<AgentConfig, 'maxEntries' | 'maxEntryBytes' | 'maxTotalBytes'>): TarLimits {
  return { maxEntries: cfg.maxEntries, maxEntryBytes: cfg.maxEntryBytes, maxTotalBytes: cfg.maxTotalBytes };
}

/** The pinned vendor key plus OMFLOW_PATCH_TRUSTED_KEYS. */
export function trustedKeysFromConfig(cfg: Pick<AgentConfig, 'trustedKeys'>): TrustedKeys {
  return loadTrustedKeys(cfg.trustedKeys);
}

/**
 * Tells every booster a new target release is in the database (they fan it out to agents).
 * A booster that is down is skipped: agents also poll the database. Returns the boosters reached.
 */
export async function notifyBoostersOfPatch(
  boosterUrls: readonly string[],
  auth: { secret: string; nodeId: string },
  notice: PatchNotice,
  timeoutMs = 3000,
): Promise<string[]> {
  const client = createClusterClient({ ...auth, timeoutMs });
  // A booster that is down or unreachable is skipped: the database poll covers it.
  const replies = await client.toEveryBooster(boosterUrls, 'POST', BOOSTER_PATH.patchNotice, notice);
  return replies.filter((r) => r.ok).map((r) => r.url);
}
