import { describe, expect, it } from 'vitest';
import { MAX_SKEW_MS, signClusterRequest, verifyClusterRequest } from '../../common/protocol/cluster-auth.js';
import { EpochFence } from '../../common/protocol/epoch.js';
import { parseHeartbeat, parseStepDispatch } from '../../common/protocol/messages.js';
import { CommonErrors } from '../../common/errors.js';

const SECRET = 'unit-test-cluster-secret';

describe('cluster authentication', () => {
  const body = JSON.stringify({ stepId: 1 });
  const now = 1_800_000_000_000;
  const headers = signClusterRequest(SECRET, 'booster-1', 'POST', '/_internal/steps/dispatch', body, now);

  it('accepts the signed request and names the sender', () => {
    expect(verifyClusterRequest(SECRET, { method: 'post', path: '/_internal/steps/dispatch', headers, body }, now + 10)).toEqual({ ok: true, nodeId: 'booster-1' });
  });

  it.each([
    ['another secret', { secret: 'another-secret-of-length' }, 'signature'],
    ['a changed body', { body: JSON.stringify({ stepId: 2 }) }, 'signature'],
    ['another path', { path: '/_internal/steps/other' }, 'signature'],
    ['another method', { method: 'PUT' }, 'signature'],
    ['an old timestamp', { now: now + MAX_SKEW_MS + 1 }, 'skew'],
    ['no signature', { headers: {} }, 'missing'],
  ])('refuses %s', (_what, change: Record<string, unknown>, reason) => {
    const r = verifyClusterRequest(
      (change.secret as string) ?? SECRET,
      { method: (change.method as string) ?? 'POST', path: (change.path as string) ?? '/_internal/steps/dispatch', headers: (change.headers as Record<string, string>) ?? headers, body: (change.body as string) ?? body },
      (change.now as number) ?? now,
    );
    expect(r).toEqual({ ok: false, reason });
  });
});

describe('epoch fence', () => {
  it('admits newer and equal epochs, refuses older ones; isStale never raises it', () => {
    const f = new EpochFence();
    expect(f.admit(3)).toBe(true);
    expect(f.admit(3)).toBe(true);
    expect(f.admit(2)).toBe(false);
    expect(f.isStale(2)).toBe(true);
    expect(f.isStale(1_000_000)).toBe(false);
    expect(f.highest).toBe(3);
    expect(EpochFence.parseHeader('12')).toBe(12);
    expect(EpochFence.parseHeader('-1')).toBeUndefined();
    expect(EpochFence.parseHeader(['1', '2'])).toBeUndefined();
  });
});

describe('message validation', () => {
  it('refuses malformed heartbeats and dispatches with a stable code', () => {
    for (const bad of [null, [], 'x', { nodeId: '../x' }, { nodeId: 'n', url: 'file:///etc/passwd' }]) {
      expect(() => parseHeartbeat(bad)).toThrow(expect.objectContaining({ code: CommonErrors.COMMON_ERR_BAD_REQUEST.code }));
    }
    expect(() => parseStepDispatch({ stepId: -1, epoch: 1, leaseMs: 1, attempt: 1 })).toThrow(expect.objectContaining({ code: 'COMMON_ERR_BAD_REQUEST' }));
    expect(parseStepDispatch({ stepId: 5, epoch: 0, leaseMs: 1000, attempt: 1 })).toMatchObject({ stepId: 5 });
  });
});
