import type { FastifyInstance } from 'fastify';
import { createLicenseVerifier, type LicenseVerifier, MAX_LICENSE_FILE_BYTES } from '../../../common/license/index.js';
import { loadTrustedKeys, trustedKeysFromConfig } from '../../../common/patch/index.js';
import type { ServerDeps } from '../../types.js';
import { createBoosterClient } from './booster-client.js';
import { clusterPage } from './cluster-page.js';
import { registerAdminMessages } from './messages.js';
import { type PatchPageOptions, patchesPage } from './patches-page.js';
import { settingsPage } from './settings-page.js';

/**
 * Admin pages: System settings (Booster license data, log level, login lockout, session
 * timeout), Cluster dashboard, Patches page. Admin only; every state-changing form carries the
 * session's CSRF token; uploads have size limits.
 * CONTRACT: the app server's composition root registers this plugin with `{ deps }`; the other
 * options are for tests and special builds (never operator settings).
 */
export interface AdminFeatureOptions {
  /** Everything the server's composition root has built; see server/app.ts. */
  deps: ServerDeps;
  /** License verification keys: default the pinned vendor keys. Tests inject their own pair. */
  licenseVerifier?: LicenseVerifier;
  /** Patch verification and limits; default from deps.config.agent when loaded, else the vendor key and default limits. */
  patch?: Partial<PatchPageOptions>;
  /** Cluster dashboard poll interval (ms). */
  clusterPollMs?: number;
}

export async function adminFeature(app: FastifyInstance, opts: AdminFeatureOptions): Promise<void> {
  const { deps } = opts;
  registerAdminMessages();
  const boosters = createBoosterClient({ urls: deps.boosterUrls, secret: deps.clusterSecret, nodeId: deps.nodeId });
  const agentCfg = (deps.config as unknown as { agent?: { trustedKeys: string[]; rolloutParallelism?: number; chunkBytes?: number } }).agent;
  const patch: PatchPageOptions = {
    trusted: opts.patch?.trusted ?? (agentCfg ? trustedKeysFromConfig(agentCfg) : loadTrustedKeys([])),
    limits: opts.patch?.limits,
    chunkBytes: opts.patch?.chunkBytes ?? agentCfg?.chunkBytes,
    parallelism: opts.patch?.parallelism ?? agentCfg?.rolloutParallelism,
    // A release is a few MiB; the upload is held in memory while it is verified.
    maxUploadBytes: opts.patch?.maxUploadBytes ?? 64 * 1024 * 1024,
  };
  await settingsPage(app, { deps, verifier: opts.licenseVerifier ?? createLicenseVerifier(), boosters, licenseBytes: MAX_LICENSE_FILE_BYTES });
  await clusterPage(app, { deps, boosters, pollMs: opts.clusterPollMs ?? 2000 });
  await patchesPage(app, { deps, patch });
}
