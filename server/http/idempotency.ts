import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Knex } from 'knex';
import type { Database } from '../../common/db/create-database.js';
import { getHelpers } from '../../common/db/helpers/index.js';
import { CommonErrors } from '../../common/errors.js';
import { HEADER } from '../../common/protocol/headers.js';
import { ServerErrors } from '../errors.js';
import { sha256Hex } from '../features/users/passwords.js';

export interface Outcome {
  status: number;
  body: unknown;
}

const KEY_TTL_MS = 24 * 3600_000;

/**
 * Runs a write with Idempotency-Key semantics. The key row is inserted first in the SAME
 * transaction as the write and completed with the response before commit, so:
 * - a replay (same principal, key and request) returns the stored response (found when the
 *   key's INSERT fails on the unique index, so a new key costs no look-up first);
 * - the same key with a different request is 422 SERVER_ERR_IDEMPOTENCY_MISMATCH;
 * - two concurrent requests with one key (on two servers) race on the unique index: the
 *   loser's insert waits for the winner's commit, fails as duplicate, and answers the
 *   winner's stored response. Exactly one write happens.
 * Without the header the write simply runs in a transaction, or as `alone` when given: a write
 * that is atomic by itself (ticket creation: one statement where the vendor allows).
 */
export async function idempotentWrite(
  db: Database,
  request: FastifyRequest,
  reply: FastifyReply,
  write: (trx: Knex.Transaction) => Promise<Outcome>,
  alone: (db: Database) => Promise<Outcome> = (d) => d.transaction(write),
): Promise<FastifyReply> {
  const rawKey = request.headers[HEADER.idempotencyKey];
  if (typeof rawKey !== 'string' || rawKey === '') {
    const out = await alone(db);
    return reply.code(out.status).send(out.body);
  }
  if (rawKey.length > 255) throw CommonErrors.COMMON_ERR_BAD_REQUEST('Idempotency-Key is longer than 255 characters');
  const principal = request.user ? `user:${request.user.id}` : 'anonymous';
  const path = request.url.split('?')[0].slice(0, 512);
  const requestHash = sha256Hex(JSON.stringify([request.method, path, request.body ?? null]));
  const h = getHelpers(db.knex);

  const replay = async (): Promise<FastifyReply | null> => {
    const row = await db.knex('idempotency_keys').where({ principal, idem_key: rawKey }).first('request_hash', 'status_code', 'response_body');
    if (!row) return null;
    if (row.request_hash !== requestHash) throw ServerErrors.SERVER_ERR_IDEMPOTENCY_MISMATCH(undefined, { key: rawKey });
    return reply.code(Number(row.status_code)).header('idempotent-replayed', 'true').send(h.fromJson(row.response_body));
  };

  // No look-up before the write: the key's INSERT is the look-up. A new key (the common case)
  // costs no extra round trip; a replay fails on the unique index and answers from the row.
  try {
    const out = await db.transaction(async (trx) => {
      const id = await h.insertReturningId(trx, 'idempotency_keys', {
        principal,
        idem_key: rawKey,
        method: request.method,
        path,
        request_hash: requestHash,
        created_at: h.now(),
        expires_at: h.nowPlusMs(KEY_TTL_MS),
      });
      const result = await write(trx);
      await trx('idempotency_keys')
        .where({ id })
        .update({ status_code: result.status, response_body: JSON.stringify(result.body ?? null) });
      return result;
    });
    return reply.code(out.status).send(out.body);
  } catch (err) {
    if (CommonErrors.COMMON_ERR_DB_UNIQUE.is(err)) {
      const late = await replay();
      if (late) return late;
    }
    throw err;
  }
}

/** Removes expired keys (a periodic chore of every server; cheap and idempotent). */
export async function purgeIdempotencyKeys(knex: Knex): Promise<number> {
  return Number(await knex('idempotency_keys').where('expires_at', '<', getHelpers(knex).now()).delete());
}
