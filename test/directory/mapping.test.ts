import { describe, expect, it } from 'vitest';
import { parseDirectoryConfig } from '../../src/directory/config.js';
import {
  changedAttributes,
  contactAttributes,
  contactDn,
  hashAttributes,
  normaliseAlias,
  readSourceUser,
} from '../../src/directory/mapping.js';

const config = parseDirectoryConfig({
  central: {
    url: 'ldap://c',
    bindDn: 'cn=a',
    bindPasswordEnv: 'X',
    baseDn: 'dc=c',
    contactContainer: 'ou=contacts,dc=c',
    sipDomain: 'example.com',
  },
  forests: [
    {
      name: 'north',
      url: 'ldap://n',
      bindDn: 'cn=r',
      bindPasswordEnv: 'Y',
      baseDn: 'dc=n',
      mapping: { disabled: { attribute: 'employeeType', values: 'disabled' } },
    },
    { name: 'ad', type: 'ad', url: 'ldap://a', bindDn: 'cn=r', bindPasswordEnv: 'Y', baseDn: 'dc=a' },
  ],
});

describe('forest attribute mapping', () => {
  it('reads an OpenLDAP user with entryUUID as anchor', () => {
    const u = readSourceUser(
      {
        dn: 'uid=Bob,dc=n',
        entryUUID: 'ABC-1',
        uid: 'Bob',
        displayName: 'Bob B',
        employeeType: 'Disabled',
        modifyTimestamp: '20250101000000Z',
      },
      config.forests[0],
    );
    expect(u).toMatchObject({ anchor: 'abc-1', alias: 'bob', disabled: true, changeMark: '20250101000000Z' });
  });

  it('reads an AD user: objectGUID as hex, userAccountControl bit 2', () => {
    const guid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const u = readSourceUser(
      { dn: 'cn=x', objectGUID: guid, sAMAccountName: 'jdoe', userAccountControl: '514', uSNChanged: '42' },
      config.forests[1],
    );
    expect(u).toMatchObject({
      anchor: '00112233445566778899aabbccddeeff',
      alias: 'jdoe',
      disabled: true,
      changeMark: '42',
    });
  });

  it('refuses aliases that are not SIP user parts', () => {
    expect(normaliseAlias('a b').problem).toMatch(/not a valid SIP user/);
    expect(normaliseAlias('a@b').problem).toBeDefined();
    expect(normaliseAlias(' J.Doe ').alias).toBe('j.doe');
  });

  it('builds contact attributes, a stable DN and a diff', () => {
    const user = {
      forest: 'north',
      anchor: 'u-1',
      dn: 'uid=a',
      alias: 'a',
      displayName: 'A',
      disabled: false,
    };
    const attrs = contactAttributes(user, { sipDomain: 'example.com', home: 'pool1', enabled: true });
    expect(attrs.parleySipAddress).toEqual(['a@example.com']);
    expect(contactDn('north', 'u-1', 'ou=contacts,dc=c')).toBe('cn=north-u-1,ou=contacts,dc=c');
    const off = { ...attrs, parleyEnabled: ['FALSE'] };
    expect(changedAttributes(attrs, off)).toEqual(['parleyEnabled']);
    expect(hashAttributes(attrs)).not.toBe(hashAttributes(off));
    expect(hashAttributes(attrs)).toBe(hashAttributes({ ...attrs }));
  });
});
