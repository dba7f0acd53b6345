import { describe, expect, it } from 'vitest';
import { CommonErrors } from '../../common/errors.js';
import { audiencesFor, bearerMatches, MAX_SKEW_MS, ReplayGuard, signClusterRequest, verifyClusterRequest } from '../../common/protocol/cluster-auth.js';
import { EpochFence } from '../../common/protocol/epoch.js';
import { HEADER } from '../../common/protocol/headers.js';
import { parseHeartbeat, parseStepDispatch } from '../../common/protocol/messages.js';

const SECRET = 'unit-test-cluster-secret';

describe('cluster authentication', () => {
  const body = JSON.stringify({ stepId: 1 });
  const now = 1_800_000_000_000;
  const headers = signClusterRequest(SECRET, 'booster-1', 'POST', '/_internal/steps/dispatch', body, now);

  it('accepts the signed request and names the sender', () => {
    expect(verifyClusterRequest(SECRET, { method: 'post', path: '/_internal/steps/dispatch', headers, body }, now + 10)).toEqual({
      ok: true,
      nodeId: 'booster-1',
    });
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
      {
        method: (change.method as string) ?? 'POST',
        path: (change.path as string) ?? '/_internal/steps/dispatch',
        headers: (change.headers as Record<string, string>) ?? headers,
        body: (change.body as string) ?? body,
      },
      (change.now as number) ?? now,
    );
    expect(r).toEqual({ ok: false, reason });
  });
});

describe('replay protection and audience', () => {
  const body = '{"reason":"x"}';
  const path = '/_booster/servers/s1/drain';
  const now = 1_800_000_000_000;

  it('accepts a nonce once per receiver, and forgets it only after the signature window', () => {
    const headers = signClusterRequest(SECRET, 'agent-1', 'POST', path, body, now, { audience: 'b1:5169' });
    const a = new ReplayGuard();
    const b = new ReplayGuard();
    const req = { method: 'POST', path, headers, body };
    expect(verifyClusterRequest(SECRET, req, now, { replay: a })).toEqual({ ok: true, nodeId: 'agent-1' });
    expect(verifyClusterRequest(SECRET, req, now + 1, { replay: a })).toEqual({ ok: false, reason: 'replay' });
    expect(verifyClusterRequest(SECRET, req, now + MAX_SKEW_MS, { replay: a })).toEqual({ ok: false, reason: 'replay' });
    // Past the window the timestamp refuses it anyway.
    expect(verifyClusterRequest(SECRET, req, now + MAX_SKEW_MS + 1, { replay: a })).toEqual({ ok: false, reason: 'skew' });
    // Each receiver keeps its own cache.
    expect(verifyClusterRequest(SECRET, req, now, { replay: b }).ok).toBe(true);
  });

  it('records nothing for a bad signature (a forger cannot fill the cache or burn a nonce)', () => {
    const guard = new ReplayGuard();
    const headers = signClusterRequest(SECRET, 'agent-1', 'POST', path, body, now);
    expect(verifyClusterRequest('another-secret-of-length', { method: 'POST', path, headers, body }, now, { replay: guard })).toEqual({
      ok: false,
      reason: 'signature',
    });
    expect(guard.size).toBe(0);
    expect(verifyClusterRequest(SECRET, { method: 'POST', path, headers, body }, now, { replay: guard }).ok).toBe(true);
  });

  it('is bounded: when full of live nonces it refuses new calls (busy) instead of forgetting one', () => {
    const guard = new ReplayGuard(3);
    for (let i = 0; i < 3; i++) expect(guard.admit(`n${i}`, now + 1000, now)).toBe('ok');
    expect(guard.admit('n3', now + 1000, now)).toBe('busy');
    expect(guard.admit('n0', now + 1000, now)).toBe('replay');
    // Once they expire there is room again.
    expect(guard.admit('n3', now + 5000, now + 2000)).toBe('ok');
    expect(guard.size).toBe(1);
  });

  it('signs nonce and audience: neither can be changed, and another audience is refused', () => {
    const headers = signClusterRequest(SECRET, 'agent-1', 'POST', path, body, now, { audience: 'b1:5169' });
    const ok = { method: 'POST', path, body };
    expect(verifyClusterRequest(SECRET, { ...ok, headers: { ...headers, [HEADER.clusterNonce]: 'f'.repeat(32) } }, now)).toEqual({
      ok: false,
      reason: 'signature',
    });
    expect(verifyClusterRequest(SECRET, { ...ok, headers: { ...headers, [HEADER.clusterAudience]: 'b2:5169' } }, now)).toEqual({
      ok: false,
      reason: 'signature',
    });
    const { [HEADER.clusterAudience]: _dropped, ...withoutAudience } = headers;
    expect(verifyClusterRequest(SECRET, { ...ok, headers: withoutAudience }, now)).toEqual({ ok: false, reason: 'signature' });
    expect(verifyClusterRequest(SECRET, { ...ok, headers }, now, { audiences: ['b2:5169'] })).toEqual({ ok: false, reason: 'audience' });
    expect(verifyClusterRequest(SECRET, { ...ok, headers }, now, { audiences: audiencesFor(['http://b1:5169']) }).ok).toBe(true);
    const { [HEADER.clusterNonce]: _n, ...withoutNonce } = headers;
    expect(verifyClusterRequest(SECRET, { ...ok, headers: withoutNonce }, now)).toEqual({ ok: false, reason: 'missing' });
  });

  it('a receiver that knows its audiences refuses a call signed for no audience (it could be replayed to any receiver)', () => {
    const unaddressed = signClusterRequest(SECRET, 'agent-1', 'POST', path, body, now);
    const audiences = audiencesFor(['http://b1:5169']);
    expect(verifyClusterRequest(SECRET, { method: 'POST', path, body, headers: unaddressed }, now, { audiences })).toEqual({ ok: false, reason: 'audience' });
    // Signed for this receiver: accepted.
    const addressed = signClusterRequest(SECRET, 'agent-1', 'POST', path, body, now, { audience: 'b1:5169' });
    expect(verifyClusterRequest(SECRET, { method: 'POST', path, body, headers: addressed }, now, { audiences }).ok).toBe(true);
  });

  it('signs every send anew', () => {
    const a = signClusterRequest(SECRET, 'n', 'POST', path, body, now);
    const b = signClusterRequest(SECRET, 'n', 'POST', path, body, now);
    expect(a[HEADER.clusterNonce]).not.toBe(b[HEADER.clusterNonce]);
    expect(a[HEADER.clusterSignature]).not.toBe(b[HEADER.clusterSignature]);
  });

  it('compares the operator token as a Bearer credential', () => {
    const token = 'operator-token-0123456789abcdef';
    expect(bearerMatches(`Bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(`bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(token, token)).toBe(false);
    expect(bearerMatches(`Bearer ${token}x`, token)).toBe(false);
    expect(bearerMatches(`Bearer ${token}`, undefined)).toBe(false);
    expect(bearerMatches(undefined, token)).toBe(false);
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
