import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { type Raw, raw } from './html.js';

/**
 * The pages' stylesheet and scripts, served as files from /assets/ so the Content-Security-Policy
 * needs no 'unsafe-inline' (server/http/security-headers.ts). Read once at start; each URL carries
 * a hash of its content, so a patch that changes a file changes its URL and browsers may cache it
 * for a year.
 */
const FILES = {
  'app.css': 'text/css; charset=utf-8',
  'cluster-page.js': 'text/javascript; charset=utf-8',
  'patches-page.js': 'text/javascript; charset=utf-8',
  'settings-page.js': 'text/javascript; charset=utf-8',
} as const;
export type AssetName = keyof typeof FILES;

const loaded = new Map<string, { body: Buffer; type: string; version: string }>();
for (const [name, type] of Object.entries(FILES)) {
  const body = readFileSync(new URL(`./assets/${name}`, import.meta.url));
  loaded.set(name, { body, type, version: createHash('sha256').update(body).digest('hex').slice(0, 12) });
}

export const ASSETS_PREFIX = '/assets/';

export function assetUrl(name: AssetName): string {
  return `${ASSETS_PREFIX}${name}?v=${loaded.get(name)!.version}`;
}

/** A page script: an external file, run where it stands (as the inline scripts before it did). */
export function scriptTag(name: AssetName): Raw {
  return raw(`<script src="${assetUrl(name)}"></script>`);
}

export async function assetsRoutes(app: FastifyInstance): Promise<void> {
  app.get(`${ASSETS_PREFIX}:name`, async (request, reply) => {
    const file = loaded.get((request.params as { name: string }).name);
    if (!file) return reply.callNotFound();
    return reply.header('cache-control', 'public, max-age=31536000, immutable').type(file.type).send(file.body);
  });
}
