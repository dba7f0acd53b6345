import type { FastifyInstance } from 'fastify';

/**
 * Admin pages owned by the License/admin work: System settings (Booster license data, log
 * level, login lockout, session timeout), Cluster dashboard, Patches page.
 * CONTRACT: the app server's composition root registers this plugin with these options.
 * STUB until the License issue fills it in.
 */
export interface AdminFeatureOptions {
  /** Everything the server's composition root has built; see server/app.ts. */
  deps: unknown;
}

export async function adminFeature(_app: FastifyInstance, _opts: AdminFeatureOptions): Promise<void> {}
