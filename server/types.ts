import type { Database } from '../common/db/create-database.js';
import type { Logger } from '../common/log.js';
import type { EpochFence } from '../common/protocol/epoch.js';
import type { ServerConfig } from './config.js';
import type { SettingsStore } from './features/settings/store.js';

export type Locale = 'en' | 'ja';
export type Role = 'admin' | 'user';

/** The signed-in user, set on the request by the auth hook (server/features/users/auth-hook.ts). */
export interface AuthUser {
  id: number;
  username: string;
  displayName: string;
  role: Role;
  locale: Locale;
}

/** How the caller authenticated. verifyCsrf only applies to `cookie`. */
export interface AuthSession {
  kind: 'cookie' | 'bearer' | 'api-token';
  /** sha256 of the token (sessions.token_hash / api_tokens.token_hash). */
  tokenHash: string;
  /** Empty for API tokens (no CSRF: they never travel in a cookie). */
  csrfToken: string;
  expiresAt: Date | null;
}

/**
 * What the composition root hands to features, including the admin feature (CONTRACT with
 * server/features/admin/index.ts): `{ config, db, log, nodeId, boosterUrls, clusterSecret, fence, settings }`.
 */
export interface ServerDeps {
  config: ServerConfig;
  db: Database;
  log: Logger;
  nodeId: string;
  boosterUrls: string[];
  clusterSecret: string;
  fence: EpochFence;
  settings: SettingsStore;
}

// The one place the fastify request type is augmented.
declare module 'fastify' {
  interface FastifyRequest {
    user: AuthUser | null;
    session: AuthSession | null;
  }
}
