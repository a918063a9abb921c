import { describe, expect, it } from 'vitest';
import { andFilter, equalityFilter, escapeDnValue, escapeFilterValue } from '../../src/directory/filter.js';

describe('RFC 4515 filter escaping', () => {
  it('escapes the five characters that would change a filter', () => {
    expect(escapeFilterValue('a*b(c)d\\e\0f')).toBe('a\\2ab\\28c\\29d\\5ce\\00f');
    expect(escapeFilterValue('plain ümlaut')).toBe('plain ümlaut');
  });

  it('escapes binary values byte by byte (objectGUID)', () => {
    expect(escapeFilterValue(Buffer.from([0x00, 0x2a, 0xff]))).toBe('\\00\\2a\\ff');
  });

  it('builds filters that cannot be widened by a value', () => {
    expect(equalityFilter('uid', '*)(uid=*')).toBe('(uid=\\2a\\29\\28uid=\\2a)');
    expect(andFilter('(objectClass=person)', equalityFilter('cn', 'x'))).toBe(
      '(&(objectClass=person)(cn=x))',
    );
    expect(() => equalityFilter('uid)(cn', 'x')).toThrow(/invalid LDAP attribute/);
  });

  it('escapes DN values (RFC 4514)', () => {
    expect(escapeDnValue('north-a,b+c')).toBe('north-a\\,b\\+c');
    expect(escapeDnValue(' lead')).toBe('\\ lead');
  });
});
