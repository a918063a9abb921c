import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { fromCatalogued } from '../../src/cli/errors.js';
import { computeHa1Pair } from '../../src/registrar/ha1.js';
import { createStore, type Store } from '../../src/store/store.js';
import {
  addUser,
  listUsers,
  removeUser,
  resolveAor,
  setPassword,
  setUserEnabled,
  showUser,
} from '../../src/users/admin.js';
import { UserAdminError } from '../../src/users/errors.js';
import { createTestDatabase } from '../support/database.js';

const domain = 'example.com';

async function expectUserAdminError(p: Promise<unknown>, code: string): Promise<UserAdminError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UserAdminError);
  expect((err as UserAdminError).code).toBe(code);
  return err as UserAdminError;
}

describe('users admin', () => {
  let store: Store;

  beforeAll(async () => {
    store = createStore(await createTestDatabase());
  });
  afterAll(async () => {
    await store.close();
  });
  beforeEach(async () => {
    await store.db.exec('TRUNCATE users, homes CASCADE');
  });

  it('resolves addresses into the server domain', () => {
    expect(resolveAor('Alice', domain)).toBe('alice@example.com');
    expect(resolveAor('sip:Bob@Example.COM', domain)).toBe('bob@example.com');
    expect(() => resolveAor('carol@other.org', domain)).toThrow(UserAdminError);
    expect(() => resolveAor('a b', domain)).toThrow(/not a valid SIP address/);
    expect(() => resolveAor('@example.com', domain)).toThrow(UserAdminError);
  });

  it('adds a user with both HA1s and never stores the password', async () => {
    const added = await addUser(store, { aor: 'alice', password: 's3cret', domain, displayName: 'Alice' });
    expect(added).toMatchObject({
      aor: 'alice@example.com',
      displayName: 'Alice',
      enabled: true,
      hasPassword: true,
    });
    const creds = await store.users.getCredentials('alice@example.com', domain);
    expect(creds).toMatchObject(computeHa1Pair('alice', domain, 's3cret'));
    const dump = JSON.stringify((await store.db.query('SELECT * FROM credentials')).rows);
    expect(dump).not.toContain('s3cret');
  });

  it('refuses a duplicate with a pointer to set-password', async () => {
    await addUser(store, { aor: 'alice', password: 'x', domain });
    const err = await expectUserAdminError(
      addUser(store, { aor: 'ALICE@example.com', password: 'y', domain }),
      'USER_EXISTS',
    );
    // The catalogue, not src/users, gives the failure its exit status and next step.
    expect(fromCatalogued(err)?.exit).toBe(4);
    expect(fromCatalogued(err)?.suggestions[0]).toContain('parley users set-password');
  });

  it('refuses a domain the deployment does not serve unless forced', () => {
    const scope = { domains: ['example.com'] };
    expect(() => resolveAor('dave@other.example', scope)).toThrow(
      expect.objectContaining({ code: 'DOMAIN_NOT_SERVED' }),
    );
    expect(() => resolveAor('dave', { ...scope, defaultDomain: 'other.example' })).toThrow(/does not serve/);
    expect(resolveAor('dave@other.example', { ...scope, force: true })).toBe('dave@other.example');
  });

  it('lists whether users of any domain have a password, each in its own realm', async () => {
    await addUser(store, {
      aor: 'erin@other.example',
      password: 'x',
      domain: { domains: ['example.com'], force: true },
    });
    const list = await listUsers(store, {});
    expect(list.users.map((u) => [u.aor, u.hasPassword])).toEqual([['erin@other.example', true]]);
  });

  it('refuses empty or multi-line passwords and unknown homes', async () => {
    await expectUserAdminError(addUser(store, { aor: 'a', password: '', domain }), 'INVALID_PASSWORD');
    await expectUserAdminError(addUser(store, { aor: 'a', password: 'x\ny', domain }), 'INVALID_PASSWORD');
    await expectUserAdminError(
      addUser(store, { aor: 'a', password: 'x', domain, home: 'nowhere' }),
      'HOME_NOT_FOUND',
    );
    expect(await store.users.countUsers()).toBe(0);
  });

  it('places a user in an existing home', async () => {
    await store.homes.upsertHome({ name: 'pool1', kind: 'pool', address: 'sip:pool1.example.com' });
    expect((await addUser(store, { aor: 'h', password: 'x', domain, home: 'pool1' })).home).toBe('pool1');
    expect((await addUser(store, { aor: 'i', password: 'x', domain, defaultHome: 'pool1' })).home).toBe(
      'pool1',
    );
    expect(
      (await addUser(store, { aor: 'j', password: 'x', domain, defaultHome: 'unknown' })).home,
    ).toBeNull();
  });

  it('changes a password', async () => {
    await addUser(store, { aor: 'bob', password: 'old', domain });
    await setPassword(store, { aor: 'bob', password: 'new', domain });
    expect(await store.users.getCredentials('bob@example.com', domain)).toMatchObject(
      computeHa1Pair('bob', domain, 'new'),
    );
    await expectUserAdminError(setPassword(store, { aor: 'ghost', password: 'x', domain }), 'USER_NOT_FOUND');
  });

  it('enables, disables, shows and removes', async () => {
    await addUser(store, { aor: 'carol', password: 'x', domain });
    expect(await setUserEnabled(store, { aor: 'carol', domain, enabled: false })).toMatchObject({
      enabled: false,
      changed: true,
    });
    expect(await setUserEnabled(store, { aor: 'carol', domain, enabled: false })).toMatchObject({
      changed: false,
    });
    expect(await showUser(store, { aor: 'carol', domain })).toMatchObject({
      aor: 'carol@example.com',
      enabled: false,
    });
    expect(await removeUser(store, { aor: 'carol', domain })).toEqual({ aor: 'carol@example.com' });
    await expectUserAdminError(showUser(store, { aor: 'carol', domain }), 'USER_NOT_FOUND');
    await expectUserAdminError(removeUser(store, { aor: 'carol', domain }), 'USER_NOT_FOUND');
    await expectUserAdminError(
      setUserEnabled(store, { aor: 'carol', domain, enabled: true }),
      'USER_NOT_FOUND',
    );
  });

  it('lists with filters, totals and a cursor', async () => {
    for (const name of ['d1', 'd2', 'd3']) await addUser(store, { aor: name, password: 'x', domain });
    await store.users.createUser({ aor: 'nopw@example.com', enabled: false });
    const all = await listUsers(store, { limit: 2 });
    expect(all.users.map((u) => u.aor)).toEqual(['d1@example.com', 'd2@example.com']);
    expect(all.total).toBe(4);
    expect(all.nextCursor).toBe('d2@example.com');
    const rest = await listUsers(store, { limit: 2, after: all.nextCursor });
    expect(rest.users.map((u) => [u.aor, u.hasPassword])).toEqual([
      ['d3@example.com', true],
      ['nopw@example.com', false],
    ]);
    const disabled = await listUsers(store, { enabled: false });
    expect(disabled.users.map((u) => u.aor)).toEqual(['nopw@example.com']);
    expect(disabled.total).toBe(1);
  });
});
