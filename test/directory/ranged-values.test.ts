import type { Entry } from 'ldapts';
import { describe, expect, it } from 'vitest';
import { rangedSlice } from '../../src/directory/ldap.js';

/** Entries as ldapts hands them over, attribute descriptions as the server sent them. */
const entry = (attrs: Record<string, string[]>): Entry => ({
  dn: 'CN=Sales,OU=Groups,DC=corp,DC=example',
  ...attrs,
});
const members = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => `CN=User ${from + i},OU=People,DC=corp,DC=example`);

describe('Active Directory ranged attributes (MS-ADTS 3.1.1.3.1.3.3)', () => {
  it('reads a first slice and names the next one to ask for', () => {
    const slice = rangedSlice(entry({ 'member;range=0-1499': members(0, 1499) }), 'member');
    expect(slice?.values).toHaveLength(1500);
    expect(slice?.low).toBe(0);
    expect(slice?.next).toBe('member;range=1500-*');
  });

  it('ends at the slice whose upper bound is *, whatever the case of the description', () => {
    const slice = rangedSlice(entry({ 'Member;Range=3000-*': members(3000, 3120) }), 'member');
    expect(slice?.values).toHaveLength(121);
    expect(slice?.low).toBe(3000);
    expect(slice?.next).toBeUndefined();
  });

  it('is no ranged attribute when the group came back whole, or for another attribute', () => {
    expect(rangedSlice(entry({ member: members(0, 9) }), 'member')).toBeUndefined();
    expect(rangedSlice(entry({ 'memberOf;range=0-1499': members(0, 1) }), 'member')).toBeUndefined();
    expect(rangedSlice(entry({ 'member;range=junk': members(0, 1) }), 'member')).toBeUndefined();
  });
});
