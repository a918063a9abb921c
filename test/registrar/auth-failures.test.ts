import { describe, expect, it } from 'vitest';
import { type AuthFailurePolicy, AuthFailureTracker } from '../../src/registrar/auth-failures.js';

const policy: AuthFailurePolicy = {
  maxFailures: 5,
  userMaxFailures: 20,
  addressMaxFailures: 30,
  failureWindowSeconds: 300,
  lockoutSeconds: 30,
  maxLockoutSeconds: 120,
};

function tracker(p: Partial<AuthFailurePolicy> = {}) {
  const clock = { t: 1_000_000 };
  return { t: new AuthFailureTracker({ ...policy, ...p }, () => clock.t), clock };
}

describe('AuthFailureTracker', () => {
  it('lets a typo pass free, then slows each further failure, then locks the pair', () => {
    const { t } = tracker();
    expect(t.recordFailure('alice', '192.0.2.1')).toEqual({ delayMs: 0 });
    expect(t.recordFailure('alice', '192.0.2.1')).toEqual({ delayMs: 500 });
    expect(t.recordFailure('alice', '192.0.2.1')).toEqual({ delayMs: 1000 });
    expect(t.recordFailure('alice', '192.0.2.1')).toEqual({ delayMs: 2000 });
    expect(t.check('alice', '192.0.2.1')).toEqual({ locked: false });
    expect(t.recordFailure('alice', '192.0.2.1')).toEqual({
      delayMs: 0,
      lockedFor: { scope: 'pair', seconds: 30 },
    });
    expect(t.check('alice', '192.0.2.1')).toEqual({ locked: true, scope: 'pair', retryAfterSeconds: 30 });
    // The real user elsewhere, and other users here, are not locked.
    expect(t.check('alice', '198.51.100.7')).toEqual({ locked: false });
    expect(t.check('bob', '192.0.2.1')).toEqual({ locked: false });
  });

  it('unlocks after the lockout, doubles the next one, and caps it', () => {
    const { t, clock } = tracker();
    const lockOnce = () => {
      let last = t.recordFailure('alice', 'a');
      while (!last.lockedFor) last = t.recordFailure('alice', 'a');
      return last.lockedFor.seconds;
    };
    expect(lockOnce()).toBe(30);
    clock.t += 30_001;
    expect(t.check('alice', 'a').locked).toBe(false);
    expect(lockOnce()).toBe(60);
    clock.t += 60_001;
    expect(lockOnce()).toBe(120);
    clock.t += 120_001;
    expect(lockOnce()).toBe(120);
  });

  it('forgets failures outside the sliding window', () => {
    const { t, clock } = tracker();
    for (let i = 0; i < 4; i++) t.recordFailure('alice', 'a');
    clock.t += 301_000;
    expect(t.recordFailure('alice', 'a')).toEqual({ delayMs: 0 });
  });

  it('clears the pair on success', () => {
    const { t } = tracker();
    for (let i = 0; i < 4; i++) t.recordFailure('alice', 'a');
    t.recordSuccess('alice', 'a');
    expect(t.recordFailure('alice', 'a')).toEqual({ delayMs: 0 });
  });

  it('gives each address one guess when a user is attacked from many, and keeps clean addresses open', () => {
    const { t } = tracker({ userMaxFailures: 6 });
    for (let i = 0; i < 5; i++) t.recordFailure('alice', `10.0.0.${i}`);
    // The sixth failure puts alice under attack: the guessing address is locked at once.
    expect(t.recordFailure('alice', '10.0.0.5').lockedFor?.scope).toBe('user');
    // Addresses that failed earlier are refused too; a clean address is not.
    expect(t.check('alice', '10.0.0.1')).toMatchObject({ locked: true, scope: 'user' });
    expect(t.check('alice', '203.0.113.9')).toEqual({ locked: false });
    expect(t.recordFailure('alice', '10.0.0.77').lockedFor?.scope).toBe('user');
  });

  it('locks an address that tries many users', () => {
    const { t } = tracker({ addressMaxFailures: 10 });
    let last = t.recordFailure('u0', 'evil');
    for (let i = 1; i < 10; i++) last = t.recordFailure(`u${i}`, 'evil');
    expect(last.lockedFor).toEqual({ scope: 'address', seconds: 30 });
    expect(t.check('anyone', 'evil')).toMatchObject({ locked: true, scope: 'address' });
    expect(t.check('anyone', 'good')).toEqual({ locked: false });
  });

  it('never locks every request whose address is unknown', () => {
    const { t } = tracker({ addressMaxFailures: 3 });
    for (let i = 0; i < 10; i++) t.recordFailure(`u${i}`, '');
    expect(t.check('someone', '')).toEqual({ locked: false });
  });

  it('stays bounded under made-up names', () => {
    const clock = { t: 0 };
    const t = new AuthFailureTracker(policy, () => clock.t, 100);
    for (let i = 0; i < 1000; i++) t.recordFailure(`user${i}`, `addr${i}`);
    const sizes = t as unknown as Record<'pairs' | 'users' | 'addresses', Map<string, unknown>>;
    // At most 100 each; past it the oldest eighth goes at once, so never fewer than 100 - 12.
    for (const map of [sizes.pairs, sizes.users, sizes.addresses]) {
      expect(map.size).toBeLessThanOrEqual(100);
      expect(map.size).toBeGreaterThanOrEqual(88);
      // The newest failures are the ones kept.
      expect(map.size > 0 && [...map.keys()].at(-1)).toMatch(/999/);
    }
  });
});
