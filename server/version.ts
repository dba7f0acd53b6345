import { readFileSync } from 'node:fs';

/** The package.json version: what this server reports unless OMFLOW_SERVER_VERSION says otherwise. */
export function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      return String(JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')).version ?? '0.0.0');
    } catch {
      // compiled layout: one more level up
    }
  }
  return '0.0.0';
}
