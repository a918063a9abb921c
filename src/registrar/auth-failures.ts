import { forgetOldest } from '../transport/limits.js';

/**
 * Password-guessing defence: failed digest answers counted per (user, address) pair, per
 * user and per source address over a sliding window.
 *
 * - A pair past maxFailures is locked: its requests get a 403 without the password being
 *   checked, for lockoutSeconds, doubling with each further lockout up to maxLockoutSeconds.
 *   The real user on another address is not affected.
 * - A user past userMaxFailures (guesses spread over many addresses) is "under attack":
 *   any address with a recent failure for that user is then locked after one failure, so
 *   each attacking address gets one guess per window, while an address with no failures
 *   (the real user's phone) still signs in with the right password.
 * - An address past addressMaxFailures (one address trying many users) is locked for every
 *   user. Behind NAT or a TCP load balancer without the client's address this locks the
 *   users sharing it: briefly, the same escalating lockout as a pair.
 * - Until a lock, each failure after the first is answered later (failureDelayMs), doubling
 *   up to maxDelayMs: a typo costs nothing, a sequential guesser crawls.
 *
 * Memory is bounded (maxEntries per map, least recently touched forgotten first) so made-up
 * user names and addresses cannot grow it.
 */
export interface AuthFailurePolicy {
  /** Failures of one user from one address within the window before that pair is locked. */
  maxFailures: number;
  /** Failures of one user from all addresses within the window before each failing address gets one try. */
  userMaxFailures: number;
  /** Failures from one address, all users, within the window before the address is locked. */
  addressMaxFailures: number;
  failureWindowSeconds: number;
  /** First lockout; each further one doubles, up to maxLockoutSeconds. */
  lockoutSeconds: number;
  maxLockoutSeconds: number;
}

export const DEFAULT_AUTH_FAILURE_POLICY: Readonly<AuthFailurePolicy> = Object.freeze({
  maxFailures: 5,
  userMaxFailures: 20,
  addressMaxFailures: 20,
  failureWindowSeconds: 300,
  lockoutSeconds: 30,
  maxLockoutSeconds: 300,
});

export type LockScope = 'pair' | 'user' | 'address';

export type LockCheck = { locked: false } | { locked: true; scope: LockScope; retryAfterSeconds: number };

export interface FailureRecord {
  /** How long to hold the failure's answer back. */
  delayMs: number;
  /** Set when this failure started a lockout. */
  lockedFor?: { scope: LockScope; seconds: number };
}

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 8000;
const UNLOCKED: LockCheck = Object.freeze({ locked: false });

interface FailureHistory {
  /** Failure times (ms), oldest first, at most the key type's threshold of them. */
  times: number[];
  lockedUntil: number;
  /** Lockouts so far; reset once the history has been quiet for a whole window. */
  lockouts: number;
}

export class AuthFailureTracker {
  private readonly pairs = new Map<string, FailureHistory>();
  private readonly users = new Map<string, FailureHistory>();
  private readonly addresses = new Map<string, FailureHistory>();
  private readonly windowMs: number;

  constructor(
    readonly policy: AuthFailurePolicy = DEFAULT_AUTH_FAILURE_POLICY,
    private readonly now: () => number = Date.now,
    private readonly maxEntries = 100_000,
  ) {
    this.windowMs = policy.failureWindowSeconds * 1000;
  }

  /** Before checking a password: is this user refused from this address for now? */
  check(user: string, address: string): LockCheck {
    // No failure on record (the usual case): nothing to build a key for or look up.
    if (this.pairs.size === 0 && this.addresses.size === 0) return UNLOCKED;
    const now = this.now();
    const pair = this.pairs.get(pairKey(user, address));
    if (pair && pair.lockedUntil > now) return locked('pair', pair.lockedUntil - now);
    const from = address === '' ? undefined : this.addresses.get(address);
    if (from && from.lockedUntil > now) return locked('address', from.lockedUntil - now);
    if (pair && this.underAttack(user, now) && this.recent(pair, now) > 0) {
      return locked('user', this.policy.lockoutSeconds * 1000);
    }
    return UNLOCKED;
  }

  recordFailure(user: string, address: string): FailureRecord {
    const now = this.now();
    const p = this.policy;
    const pair = this.add(this.pairs, pairKey(user, address), now, p.maxFailures);
    this.add(this.users, user, now, p.userMaxFailures);
    // '' = the caller knows no address: never one lock for every such request.
    const from = address === '' ? undefined : this.add(this.addresses, address, now, p.addressMaxFailures);
    const pairCount = this.recent(pair, now);
    if (from && this.recent(from, now) >= p.addressMaxFailures) {
      return { delayMs: 0, lockedFor: { scope: 'address', seconds: this.lock(from, now) } };
    }
    if (pairCount >= p.maxFailures) {
      return { delayMs: 0, lockedFor: { scope: 'pair', seconds: this.lock(pair, now) } };
    }
    if (this.underAttack(user, now)) {
      return { delayMs: 0, lockedFor: { scope: 'user', seconds: this.lock(pair, now) } };
    }
    const delayMs = pairCount <= 1 ? 0 : Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (pairCount - 2));
    return { delayMs };
  }

  /** The right password: this pair's record is wiped (the user's and address's counts stay). */
  recordSuccess(user: string, address: string): void {
    if (this.pairs.size > 0) this.pairs.delete(pairKey(user, address));
  }

  private underAttack(user: string, now: number): boolean {
    const history = this.users.get(user);
    return history !== undefined && this.recent(history, now) >= this.policy.userMaxFailures;
  }

  private recent(history: FailureHistory, now: number): number {
    const since = now - this.windowMs;
    let stale = 0;
    while (stale < history.times.length && history.times[stale] <= since) stale++;
    if (stale > 0) history.times.splice(0, stale);
    return history.times.length;
  }

  private add(map: Map<string, FailureHistory>, key: string, now: number, keep: number): FailureHistory {
    let history = map.get(key);
    if (history) {
      map.delete(key);
      // A whole quiet window since the last failure and no lock: start the escalation over.
      const last = history.times[history.times.length - 1] ?? 0;
      if (history.lockedUntil <= now && now - Math.max(last, history.lockedUntil) > this.windowMs) {
        history.lockouts = 0;
      }
    } else {
      history = { times: [], lockedUntil: 0, lockouts: 0 };
    }
    history.times.push(now);
    if (history.times.length > keep) history.times.splice(0, history.times.length - keep);
    map.set(key, history);
    forgetOldest(map, this.maxEntries);
    return history;
  }

  /** Locks and returns the lock's length in seconds: lockoutSeconds doubling per lockout, capped. */
  private lock(history: FailureHistory, now: number): number {
    const p = this.policy;
    const seconds = Math.min(p.maxLockoutSeconds, p.lockoutSeconds * 2 ** history.lockouts);
    history.lockouts++;
    history.lockedUntil = now + seconds * 1000;
    // The failures that led here are spent: after the lock, the count starts again.
    history.times.length = 0;
    return seconds;
  }
}

function pairKey(user: string, address: string): string {
  return `${user}\n${address}`;
}

function locked(scope: LockScope, remainingMs: number): LockCheck {
  return { locked: true, scope, retryAfterSeconds: Math.max(1, Math.ceil(remainingMs / 1000)) };
}
