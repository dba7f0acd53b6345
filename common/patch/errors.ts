import { defineErrors } from '../errors.js';

/**
 * Codes of patch verification, storage and rollout. They live in common/ because the app
 * server's admin Patches page calls the same functions; the codes keep the AGENT_ERR_ prefix
 * and are documented with the agent's catalogue (agent/errors.ts re-exports them).
 */
export const PatchErrors = defineErrors({
  AGENT_ERR_PATCH_FORMAT: {
    status: 400,
    message: 'The file is not an OMFLOW patch (expected a tar.gz holding manifest.json, manifest.sig and payload.tar.gz)',
    hint: 'Build patches with `omflow patch build`.',
  },
  AGENT_ERR_PATCH_UNTRUSTED_KEY: {
    status: 400,
    message: 'The patch is signed with a key that is not trusted here',
    hint: 'Add the operator public key to OMFLOW_PATCH_TRUSTED_KEYS on every node, or use a vendor-signed patch.',
  },
  AGENT_ERR_PATCH_SIGNATURE: {
    status: 400,
    message: 'The patch manifest signature does not verify',
    hint: 'The manifest was altered or signed with another key; obtain the patch again from its source.',
  },
  AGENT_ERR_PATCH_TAMPERED: {
    status: 400,
    message: 'The patch payload does not match the sha256 and size in its signed manifest',
    hint: 'The archive was altered or truncated; obtain the patch again from its source.',
  },
  AGENT_ERR_PATCH_SEQUENCE_REPLAY: {
    status: 409,
    message: 'The patch sequence number is not greater than the one already installed or applied',
    hint: 'Patches only move forward: build the new patch with a higher --sequence. Use `omflow patch rollback` to go back.',
  },
  AGENT_ERR_PATCH_VERSION_EXISTS: {
    status: 409,
    message: 'A patch with this version was already applied',
    hint: 'Give every patch its own --version.',
  },
  AGENT_ERR_PATCH_PATH_TRAVERSAL: {
    status: 400,
    message: 'The patch holds a path with a ".." component',
    hint: 'Refused for safety; rebuild the patch from a plain directory.',
  },
  AGENT_ERR_PATCH_ABSOLUTE_PATH: {
    status: 400,
    message: 'The patch holds an absolute path',
    hint: 'Refused for safety; rebuild the patch from a plain directory.',
  },
  AGENT_ERR_PATCH_SYMLINK: {
    status: 400,
    message: 'The patch holds a symbolic link',
    hint: 'Archives may hold regular files and directories only; the agent creates node_modules links itself.',
  },
  AGENT_ERR_PATCH_HARDLINK: {
    status: 400,
    message: 'The patch holds a hard link',
    hint: 'Archives may hold regular files and directories only.',
  },
  AGENT_ERR_PATCH_ENTRY_TYPE: {
    status: 400,
    message: 'The patch holds an entry that is neither a regular file nor a directory (device, FIFO, extended header)',
    hint: 'Archives may hold regular files and directories only.',
  },
  AGENT_ERR_PATCH_ENTRY_TOO_LARGE: {
    status: 400,
    message: 'A patch entry is larger than OMFLOW_PATCH_MAX_ENTRY_BYTES',
    hint: 'Raise the cap on every node if the file is legitimate.',
  },
  AGENT_ERR_PATCH_TOO_LARGE: {
    status: 400,
    message: 'The patch is larger than OMFLOW_PATCH_MAX_TOTAL_BYTES',
    hint: 'Raise the cap on every node if the release is legitimate.',
  },
  AGENT_ERR_PATCH_TOO_MANY_ENTRIES: {
    status: 400,
    message: 'The patch holds more entries than OMFLOW_PATCH_MAX_ENTRIES',
    hint: 'Raise the cap on every node if the release is legitimate.',
  },
  AGENT_ERR_PATCH_FILE_LIST: {
    status: 400,
    message: 'The extracted files differ from the signed file list (path, sha256, mode or a missing/extra file)',
    hint: 'The payload was built inconsistently or altered; rebuild it with `omflow patch build`.',
  },
  AGENT_ERR_PATCH_NOT_A_RELEASE: {
    status: 400,
    message: 'The patch is not a whole app-server release (common/bin/omflow.mjs is missing)',
    hint: 'Build the patch from a release directory holding server/, common/, migrations/ and package.json.',
  },
  AGENT_ERR_PATCH_NOT_FOUND: {
    status: 404,
    message: 'No such patch or rollout',
    hint: 'See `omflow patch status`.',
  },
  AGENT_ERR_ROLLOUT_STATE: {
    status: 409,
    message: 'The rollout is not in a state that allows this action',
    hint: 'See `omflow patch status`.',
  },
  AGENT_ERR_HEALTH_GATE: {
    status: 500,
    message: 'The new release did not pass the health gate; the node reverted and the rollout was halted',
    hint: 'Read the server log of the node; fix the patch and apply a new one with a higher sequence.',
  },
  AGENT_ERR_KEY_INVALID: {
    status: 400,
    message: 'A patch key could not be read (expected an Ed25519 PEM file or keyId=base64 SPKI)',
    hint: 'Create keys with `omflow patch keygen --out DIR`.',
  },
});
