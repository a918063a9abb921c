import { describe, expect, it } from 'vitest';
import { computeHa1, computeHa1Pair, computeUserHa1, digestIdentity } from '../../src/registrar/ha1.js';

describe('HA1', () => {
  it('matches the RFC 2617 3.5 example (MD5)', () => {
    // The RFC's example response is built on this HA1.
    expect(computeHa1('Mufasa', 'testrealm@host.com', 'Circle Of Life', 'MD5')).toBe(
      '939e7578ed9e3c518a452acee763bce9',
    );
  });

  it('computes both algorithms of RFC 7616 3.4.2', () => {
    const pair = computeHa1Pair('Mufasa', 'http-auth@example.org', 'Circle of Life');
    expect(pair).toEqual({
      ha1Md5: '3d78807defe7de2157e2b0b6573a855f',
      ha1Sha256: '7987c64c30e25f1b74be53f966b49b90f2808aa92faf9a00262392d7b4794232',
    });
  });

  it('splits an AOR into digest username and realm', () => {
    expect(digestIdentity('alice@Example.com')).toEqual({ username: 'alice', realm: 'example.com' });
    expect(() => digestIdentity('alice')).toThrow();
    expect(computeUserHa1('alice@example.com', 'pw')).toEqual(computeHa1Pair('alice', 'example.com', 'pw'));
  });
});
