import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CATALOGUES, configurationMarkdown, errorsMarkdown } from '../docs/reference.js';

const read = (p: string) => readFileSync(new URL(`../../${p}`, import.meta.url), 'utf8');

describe('reference docs are true', () => {
  it('docs/configuration.md matches the key definitions (run `npm run docs`)', () => {
    expect(read('docs/configuration.md')).toBe(configurationMarkdown());
  });

  it('docs/errors.md matches the error catalogues (run `npm run docs`)', () => {
    expect(read('docs/errors.md')).toBe(errorsMarkdown());
  });

  it('every code is prefixed by its part and has a status and a hint', () => {
    const prefixes: Record<string, string> = { Common: 'COMMON_ERR_', Booster: 'BOOSTER_ERR_', Agent: 'AGENT_ERR_', App: 'SERVER_ERR_' };
    for (const [title, catalogue] of CATALOGUES) {
      const prefix = prefixes[title.split(' ')[0]];
      for (const f of Object.values(catalogue)) {
        expect(f.code.startsWith(prefix), f.code).toBe(true);
        expect(f.status).toBeGreaterThanOrEqual(400);
        expect(f.spec.hint.length).toBeGreaterThan(5);
      }
    }
  });
});
