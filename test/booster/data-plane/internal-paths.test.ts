import { describe, expect, it } from 'vitest';
import { isInternalPath } from '../../../booster/data-plane/internal-paths.js';

describe('isInternalPath', () => {
  it('sees /_internal/ however the path spells it for the app server router', () => {
    for (const p of [
      '/_internal/steps/dispatch',
      '/%5Finternal/steps/dispatch',
      '/%5finternal/steps/dispatch?x=1',
      '/x/../_internal/steps/dispatch',
      '/x/%2e%2e/_internal/steps/dispatch',
      '/%255Finternal/steps/dispatch',
      '//_internal/steps/dispatch',
      '/_internal',
      '/%E0%A4%A/broken-escape',
    ])
      expect(isInternalPath(p), p).toBe(true);
  });

  it('leaves every other path alone', () => {
    for (const p of ['/', '/api/tickets', '/api/x%20y', '/.well-known/security.txt', '/a/./b', '/internal/x', '/api?next=/_internal/x', '/_internalx'])
      expect(isInternalPath(p), p).toBe(false);
  });
});
