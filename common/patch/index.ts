/**
 * Patch handling shared by the agent (agent/), `omflow patch` and the app server's admin
 * Patches page (server/features/admin/). See agent/README.md "Patches API".
 */
export { PatchErrors } from './errors.js';
export { VENDOR_PATCH_KEYS, generatePatchKeyPair, keyIdOf, loadTrustedKeys, readPrivateKey, type GeneratedKeyPair, type TrustedKeys } from './keys.js';
export {
  DEFAULT_LIMITS, PATCH_FORMAT, RELEASE_ENTRY, RELEASE_META, VERSION_PATTERN, buildPatch, collectDirectory, extractToStaging,
  peekManifest, safeRelativePath, verifyPatch,
  type BuildPatchOptions, type ManifestFile, type PatchManifest, type VerifiedPatch, type VerifyOptions,
} from './archive.js';
export { writeTar, readTar, type RawTarEntry, type TarEntry, type TarLimits } from './tar.js';
export { MAX_CHUNK_BYTES, applyPatch, listPatches, loadPatchBytes, storePatch, type PatchRow, type StoreOptions, type StoredPatch } from './store.js';
export {
  NODE_STATES, ROLLOUT_STATES, acquireLock, acquireRolloutSlot, finishRollback, getLatestRollout, getRollout, haltRollout, listRollouts,
  releaseLock, renewLock, resumeRollout, rollbackRollout, rolloutStatus, setNodeState,
  type NodeView, type Rollout, type RolloutNode, type RolloutNodeState, type RolloutState,
} from './rollout.js';
export { limitsFromConfig, trustedKeysFromConfig, notifyBoostersOfPatch } from './config.js';
