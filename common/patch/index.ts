/**
 * Patch handling shared by the agent (agent/), `omflow patch` and the app server's admin
 * Patches page (server/features/admin/). See agent/README.md "Patches API".
 */

export {
  type BuildPatchOptions,
  buildPatch,
  collectDirectory,
  DEFAULT_LIMITS,
  extractToStaging,
  type ManifestFile,
  PATCH_FORMAT,
  type PatchManifest,
  peekManifest,
  RELEASE_ENTRY,
  RELEASE_META,
  safeRelativePath,
  VERSION_PATTERN,
  type VerifiedPatch,
  type VerifyOptions,
  verifyPatch,
} from './archive.js';
export { limitsFromConfig, notifyBoostersOfPatch, trustedKeysFromConfig } from './config.js';
export { PatchErrors } from './errors.js';
export { type GeneratedKeyPair, generatePatchKeyPair, keyIdOf, loadTrustedKeys, readPrivateKey, type TrustedKeys, VENDOR_PATCH_KEYS } from './keys.js';
export {
  acquireLock,
  acquireRolloutSlot,
  finishRollback,
  getLatestRollout,
  getRollout,
  haltRollout,
  listRollouts,
  NODE_STATES,
  type NodeView,
  ROLLOUT_STATES,
  type Rollout,
  type RolloutNode,
  type RolloutNodeState,
  type RolloutState,
  releaseLock,
  renewLock,
  resumeRollout,
  rollbackRollout,
  rolloutStatus,
  setNodeState,
} from './rollout.js';
export { applyPatch, listPatches, loadPatchBytes, MAX_CHUNK_BYTES, type PatchRow, type StoredPatch, type StoreOptions, storePatch } from './store.js';
export { type RawTarEntry, readTar, type TarEntry, type TarLimits, writeTar } from './tar.js';
