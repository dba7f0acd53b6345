import { CommonErrors } from '../errors.js';

/**
 * Error codes one part reads from another's reply. Senders match on these, never on
 * spelled-out strings; test/unit/cluster-client.test.ts checks each against its catalogue
 * (server codes live in server/errors.ts, which common/ cannot import).
 */
export const WIRE_ERROR = {
  /** A server refused a dispatch or request from an older booster epoch than it has seen. */
  staleEpoch: 'SERVER_ERR_STALE_EPOCH',
  clusterAuth: CommonErrors.COMMON_ERR_CLUSTER_AUTH.code,
  clusterReplay: CommonErrors.COMMON_ERR_CLUSTER_REPLAY.code,
  clusterBusy: CommonErrors.COMMON_ERR_CLUSTER_BUSY.code,
  operatorAuth: CommonErrors.COMMON_ERR_OPERATOR_AUTH.code,
} as const;

/** The `code` of a JSON error reply, when there is one. */
export function wireErrorCode(body: unknown): string | undefined {
  const code = body && typeof body === 'object' ? (body as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}
