import { describe, expect, it } from 'vitest';
import { type DirectoryConfigError, parseDirectoryConfig } from '../../src/directory/config.js';

const central = {
  url: 'ldap://central.example:389',
  bindDn: 'cn=sync,dc=central',
  bindPasswordFile: '/etc/parley/central.pw',
  baseDn: 'dc=central',
  contactContainer: 'ou=contacts,dc=central',
  sipDomain: 'Example.COM',
};
const forest = {
  name: 'north',
  url: 'ldaps://dc1.north.example',
  bindDn: 'cn=reader,dc=north',
  bindPasswordEnv: 'NORTH_PW',
  baseDn: 'dc=north',
};

function errorOf(raw: unknown): DirectoryConfigError {
  try {
    parseDirectoryConfig(raw, { file: 'parley.yaml' });
  } catch (err) {
    return err as DirectoryConfigError;
  }
  throw new Error('expected an error');
}

describe('parseDirectoryConfig', () => {
  it('fills defaults', () => {
    const c = parseDirectoryConfig({ central, forests: [forest, { ...forest, name: 'ad1', type: 'ad' }] });
    expect(c.central.sipDomain).toBe('example.com');
    expect(c.central.password).toEqual({ file: '/etc/parley/central.pw' });
    expect(c.forests[0]).toMatchObject({
      type: 'openldap',
      filter: '(objectClass=inetOrgPerson)',
      pageSize: 500,
    });
    expect(c.forests[0].mapping).toMatchObject({ alias: 'uid', disabled: { kind: 'none' } });
    expect(c.forests[1].mapping).toMatchObject({ alias: 'sAMAccountName', disabled: { kind: 'ad-uac' } });
    expect(c.sync).toMatchObject({ deleteGraceSeconds: 30 * 86400, maxDeletes: 500 });
  });

  it('reads disabled rules', () => {
    const c = parseDirectoryConfig({
      central,
      forests: [
        { ...forest, mapping: { disabled: { attribute: 'employeeType', values: ['Disabled', 'left'] } } },
        { ...forest, name: 'b', mapping: { disabled: { attribute: 'pwdAccountLockedTime', present: true } } },
      ],
    });
    expect(c.forests[0].mapping.disabled).toEqual({
      kind: 'values',
      attribute: 'employeeType',
      values: ['disabled', 'left'],
    });
    expect(c.forests[1].mapping.disabled).toEqual({ kind: 'present', attribute: 'pwdAccountLockedTime' });
  });

  it('refuses inline passwords and names the key', () => {
    const err = errorOf({ central, forests: [{ ...forest, bindPassword: 'hunter2' }] });
    expect(err.key).toBe('directory.forests[0].bindPassword');
    expect(err.message).toContain('parley.yaml');
    expect(err.message).not.toContain('hunter2');
  });

  it('names the missing or wrong key', () => {
    expect(errorOf({ central: { ...central, sipDomain: undefined }, forests: [forest] }).key).toBe(
      'directory.central.sipDomain',
    );
    expect(errorOf({ central, forests: [{ ...forest, url: 'http://x' }] }).key).toBe(
      'directory.forests[0].url',
    );
    expect(errorOf({ central, forests: [forest, forest] }).key).toBe('directory.forests[1].name');
    expect(errorOf({ central, forests: [] }).key).toBe('directory.forests');
    expect(errorOf({ central, forests: [forest], sync: { deleteGracePeriod: 'soon' } }).key).toBe(
      'directory.sync.deleteGracePeriod',
    );
    expect(
      errorOf({ central: { ...central, contactContainer: 'ou=x,dc=other' }, forests: [forest] }).key,
    ).toBe('directory.central.contactContainer');
  });
});
