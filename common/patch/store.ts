import { createHash } from 'node:crypto';
import type { Database } from '../db/create-database.js';
import { getHelpers } from '../db/helpers/index.js';
import { isOmflowError } from '../errors.js';
import type { PatchNotice } from '../protocol/messages.js';
import { type VerifiedPatch, type VerifyOptions, verifyPatch } from './archive.js';
import { PatchErrors } from './errors.js';
import type { TrustedKeys } from './keys.js';

/** Largest chunk stored in patch_chunks (fits every vendor's BLOB handling and packet limits). */
export const MAX_CHUNK_BYTES = 256 * 1024;

export interface StoreOptions {
  chunkBytes?: number;
  /** Nodes installing at the same time (rollouts.parallelism). */
  parallelism?: number;
  appliedBy?: string;
  appliedOn?: string;
}

export interface StoredPatch {
  patchId: number;
  rolloutId: number;
  version: string;
  sequence: number;
  notice: PatchNotice;
}

/**
 * Stores a verified patch in the database in chunks and makes it the target of a new rollout;
 * older open rollouts are superseded. Refuses a sequence not greater than every stored one.
 */
export async function storePatch(db: Database, bytes: Buffer, patch: VerifiedPatch, opts: StoreOptions = {}): Promise<StoredPatch> {
  const chunkBytes = Math.min(opts.chunkBytes ?? MAX_CHUNK_BYTES, MAX_CHUNK_BYTES);
  const h = getHelpers(db.knex);
  const m = patch.manifest;
  try {
    return await db.transaction(async (trx) => {
      const row = (await trx('patches').max({ max: 'sequence' }).first()) as { max: unknown } | undefined;
      const newest = row?.max === null || row?.max === undefined ? 0 : Number(row.max);
      if (m.sequence <= newest)
        throw PatchErrors.AGENT_ERR_PATCH_SEQUENCE_REPLAY(`sequence ${m.sequence} is not greater than ${newest}, the newest applied`, {
          sequence: m.sequence,
          newest,
        });
      if (await trx('patches').where({ version: m.version }).first())
        throw PatchErrors.AGENT_ERR_PATCH_VERSION_EXISTS(`version ${m.version} was already applied`);
      const chunkCount = Math.ceil(bytes.length / chunkBytes);
      const patchId = await h.insertReturningId(trx, 'patches', {
        version: m.version,
        sequence: m.sequence,
        manifest_b64: patch.manifestBytes.toString('base64'),
        signature_b64: patch.signatureB64,
        key_id: m.keyId,
        archive_sha256: patch.archiveSha256,
        archive_size: bytes.length,
        chunk_size: chunkBytes,
        chunk_count: chunkCount,
        applied_by: opts.appliedBy?.slice(0, 128) ?? null,
        applied_on: opts.appliedOn?.slice(0, 64) ?? null,
        created_at: h.now(),
      });
      for (let i = 0; i < chunkCount; i++)
        await trx('patch_chunks').insert({ patch_id: patchId, chunk_index: i, data: bytes.subarray(i * chunkBytes, (i + 1) * chunkBytes) });
      await trx('rollouts').whereIn('state', ['active', 'halted', 'rolling_back']).update({ state: 'superseded', updated_at: h.now(), finished_at: h.now() });
      const rolloutId = await h.insertReturningId(trx, 'rollouts', {
        patch_id: patchId,
        version: m.version,
        state: 'active',
        parallelism: opts.parallelism ?? 1,
        started_at: h.now(),
        updated_at: h.now(),
      });
      return { patchId, rolloutId, version: m.version, sequence: m.sequence, notice: { patchId, version: m.version, sequence: m.sequence } };
    });
  } catch (err) {
    // Two applies racing for the same sequence or version: the loser sees the unique index.
    if (isOmflowError(err) && err.code === 'COMMON_ERR_DB_UNIQUE')
      throw PatchErrors.AGENT_ERR_PATCH_SEQUENCE_REPLAY('another patch with this sequence or version was applied at the same time');
    throw err;
  }
}

/** Verify + store: what `omflow patch apply` and the admin upload call. */
export async function applyPatch(
  db: Database,
  bytes: Buffer,
  trusted: TrustedKeys,
  opts: StoreOptions & { verify?: VerifyOptions } = {},
): Promise<StoredPatch> {
  const verified = verifyPatch(bytes, trusted, opts.verify);
  return storePatch(db, bytes, verified, opts);
}

export interface PatchRow {
  id: number;
  version: string;
  sequence: number;
  keyId: string;
  archiveSha256: string;
  archiveSize: number;
  chunkCount: number;
  appliedBy: string | null;
  appliedOn: string | null;
  createdAt: Date | null;
}

export async function listPatches(db: Database, limit = 20): Promise<PatchRow[]> {
  const h = getHelpers(db.knex);
  const rows = await db.knex('patches').orderBy('sequence', 'desc').limit(limit);
  return rows.map((r: Record<string, unknown>) => ({
    id: Number(r.id),
    version: String(r.version),
    sequence: Number(r.sequence),
    keyId: String(r.key_id),
    archiveSha256: String(r.archive_sha256),
    archiveSize: Number(r.archive_size),
    chunkCount: Number(r.chunk_count),
    appliedBy: (r.applied_by as string) ?? null,
    appliedOn: (r.applied_on as string) ?? null,
    createdAt: h.toDate(r.created_at),
  }));
}

/**
 * Reassembles a patch file from its chunks. The database is not trusted for integrity: the
 * caller must run verifyPatch on the result; the sha256 check here only catches corruption early.
 */
export async function loadPatchBytes(db: Database, patchId: number): Promise<Buffer> {
  const h = getHelpers(db.knex);
  const patch = await db.knex('patches').where({ id: patchId }).first();
  if (!patch) throw PatchErrors.AGENT_ERR_PATCH_NOT_FOUND(`patch ${patchId} is not in the database`);
  const chunks = await db.knex('patch_chunks').where({ patch_id: patchId }).orderBy('chunk_index', 'asc');
  if (chunks.length !== Number(patch.chunk_count) || chunks.some((c: { chunk_index: unknown }, i: number) => Number(c.chunk_index) !== i))
    throw PatchErrors.AGENT_ERR_PATCH_TAMPERED(`patch ${patchId}: chunks are missing`);
  const bytes = Buffer.concat(chunks.map((c: { data: unknown }) => h.toBuffer(c.data)));
  if (bytes.length !== Number(patch.archive_size) || createHash('sha256').update(bytes).digest('hex') !== patch.archive_sha256)
    throw PatchErrors.AGENT_ERR_PATCH_TAMPERED(`patch ${patchId}: stored chunks do not add up to the stored archive`);
  return bytes;
}

/**
 * Retention: one batch of the chunks of superseded patches. Agents only ever install the newest
 * rollout's patch from the database (a rollback goes back to a release on the node's disk), so
 * the chunks of every patch but the newest `keep` (by sequence) and those of an open rollout are
 * dead weight, up to 512 MB each. The `patches` rows stay (history). Returns chunks deleted.
 */
export async function purgeSupersededPatchChunks(db: Database, keep: number, limit: number): Promise<number> {
  const knex = db.knex;
  const kept = (await knex('patches').select('id').orderBy('sequence', 'desc').limit(keep)).map((r: { id: unknown }) => Number(r.id));
  const open = (await knex('rollouts').select('patch_id').whereIn('state', ['active', 'halted', 'rolling_back'])).map((r: { patch_id: unknown }) =>
    Number(r.patch_id),
  );
  const old = await knex('patch_chunks')
    .select('patch_id')
    .whereNotIn('patch_id', [...kept, ...open, 0])
    .orderBy('patch_id')
    .first();
  if (!old) return 0;
  const indexes = (await knex('patch_chunks').select('chunk_index').where('patch_id', old.patch_id).orderBy('chunk_index').limit(limit)).map(
    (r: { chunk_index: unknown }) => Number(r.chunk_index),
  );
  return Number(await knex('patch_chunks').where('patch_id', old.patch_id).whereIn('chunk_index', indexes).del());
}
