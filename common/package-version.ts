import { readFileSync } from 'node:fs';

/**
 * The version in OMFLOW's package.json. It sits one level above common/ in a checkout and two
 * in the compiled layout (dist/common/); `fallback` when neither can be read.
 */
export function packageVersion(): string;
export function packageVersion<F>(fallback: F): string | F;
export function packageVersion(fallback: unknown = '0.0.0'): unknown {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: unknown };
      if (typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not at this level
    }
  }
  return fallback;
}
