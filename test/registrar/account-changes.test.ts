import type { Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import { AccountChanges, type SignOutReason } from '../../src/registrar/account-changes.js';
import { CredentialCache, type UserCredentials } from '../../src/registrar/credentials.js';

/** The users channel's consumer on fakes: which users are signed out, why, and what is logged. */
function setup(opts: { active: string[]; accounts: Record<string, UserCredentials | 'no-credentials'> }) {
  const lookups: string[] = [];
  const credentials = new CredentialCache({
    lookup: async (aor) => {
      lookups.push(aor);
      const a = opts.accounts[aor];
      return a && a !== 'no-credentials' ? a : undefined;
    },
  });
  const signedOut: Array<[string, SignOutReason]> = [];
  const logged: Array<{ obj: Record<string, unknown>; msg: string }> = [];
  const log = {
    info: (obj: Record<string, unknown>, msg: string) => logged.push({ obj, msg }),
    warn: (obj: Record<string, unknown>, msg: string) => logged.push({ obj, msg }),
  } as unknown as Logger;
  const changes = new AccountChanges({
    credentials,
    activeUsers: () => opts.active,
    userExists: async (aor) => aor in opts.accounts,
    signOut: async (aor, reason) => {
      signedOut.push([aor, reason]);
      return { bindings: 2, subscriptions: 1 };
    },
    log,
  });
  return { changes, credentials, lookups, signedOut, logged };
}

const creds = (aor: string, enabled: boolean): UserCredentials => ({
  aor,
  enabled,
  ha1Md5: 'a'.repeat(32),
  ha1Sha256: 'b'.repeat(64),
});

describe('AccountChanges', () => {
  it('signs out live users that were disabled, removed or left without secrets, and logs who and why', async () => {
    const t = setup({
      active: ['off@x', 'gone@x', 'nokey@x', 'fine@x'],
      accounts: {
        'off@x': creds('off@x', false),
        'fine@x': creds('fine@x', true),
        'nokey@x': 'no-credentials',
      },
    });
    t.credentials.preload([creds('off@x', true), creds('fine@x', true)]);
    for (const aor of ['off@x', 'gone@x', 'nokey@x', 'fine@x']) t.changes.onChange(aor);
    // The cache forgets at once: the next request of the user is checked against the store.
    expect(t.credentials.peek('off@x')).toBeUndefined();
    await t.changes.settled();
    expect(t.signedOut).toEqual([
      ['off@x', 'disabled'],
      ['gone@x', 'removed'],
      ['nokey@x', 'no-credentials'],
    ]);
    expect(t.logged).toEqual([
      {
        obj: { aor: 'off@x', reason: 'disabled', bindings: 2, subscriptions: 1 },
        msg: 'user signed out: account disabled',
      },
      {
        obj: { aor: 'gone@x', reason: 'removed', bindings: 2, subscriptions: 1 },
        msg: 'user signed out: account removed',
      },
      {
        obj: { aor: 'nokey@x', reason: 'no-credentials', bindings: 2, subscriptions: 1 },
        msg: 'user signed out: credentials removed',
      },
    ]);
  });

  it('looks up only changed users that are live here, once per burst', async () => {
    const t = setup({ active: ['live@x'], accounts: { 'live@x': creds('live@x', true) } });
    for (let i = 0; i < 1000; i++) t.changes.onChange(`other${i}@x`);
    t.changes.onChange('live@x');
    t.changes.onChange('live@x');
    await t.changes.settled();
    expect(t.lookups).toEqual(['live@x']);
    expect(t.signedOut).toEqual([]);
  });

  it('an empty payload rechecks every live user', async () => {
    const t = setup({
      active: ['a@x', 'b@x'],
      accounts: { 'a@x': creds('a@x', true), 'b@x': creds('b@x', false) },
    });
    t.credentials.preload([creds('a@x', true), creds('b@x', true)]);
    t.changes.onChange('');
    expect(t.credentials.size).toBe(0);
    await t.changes.settled();
    expect(t.lookups.sort()).toEqual(['a@x', 'b@x']);
    expect(t.signedOut).toEqual([['b@x', 'disabled']]);
  });

  it('a failed lookup is logged and the next change is still handled', async () => {
    let fail = true;
    const signedOut: string[] = [];
    const warnings: string[] = [];
    const changes = new AccountChanges({
      credentials: new CredentialCache({
        lookup: async (aor) => {
          if (fail) throw new Error('store unreachable');
          return creds(aor, false);
        },
      }),
      activeUsers: () => ['a@x'],
      userExists: async () => true,
      signOut: async (aor) => {
        signedOut.push(aor);
        return {};
      },
      log: {
        info: () => undefined,
        warn: (_: unknown, msg: string) => warnings.push(msg),
      } as unknown as Logger,
    });
    changes.onChange('a@x');
    await changes.settled();
    expect(warnings).toEqual(['could not check a changed account']);
    fail = false;
    changes.onChange('a@x');
    await changes.settled();
    expect(signedOut).toEqual(['a@x']);
  });
});
