import { describe, expect, it } from 'vitest';
import {
  type AccessRule,
  authorizeWatcher,
  normalizeAddress,
  parseAccessPattern,
} from '../../src/presence/authorize.js';

const PRESENTITY = 'alice@example.com';

function decide(
  watcher: string,
  rules: AccessRule[],
  extra: Partial<Parameters<typeof authorizeWatcher>[0]> = {},
) {
  return authorizeWatcher({ watcher, presentity: PRESENTITY, rules, sameDomainDefault: true, ...extra });
}

describe('authorizeWatcher defaults', () => {
  it('allows the same organisation and leaves others pending', () => {
    expect(decide('bob@example.com', [])).toBe('allow');
    expect(decide('sip:bob@example.com', [])).toBe('allow');
    expect(decide('carol@partner.org', [])).toBe('pending');
    expect(decide('dave@sub.example.com', [])).toBe('pending');
  });

  it('leaves everybody pending when same-domain default is off', () => {
    expect(decide('bob@example.com', [], { sameDomainDefault: false })).toBe('pending');
  });

  it('treats every organisation domain as the same organisation', () => {
    const organisationDomains = ['example.com', 'Example.NET'];
    expect(decide('bob@example.net', [], { organisationDomains })).toBe('allow');
    expect(decide('bob@example.org', [], { organisationDomains })).toBe('pending');
    // the list replaces the presentity's own domain
    expect(decide('bob@example.com', [], { organisationDomains: ['corp.example'] })).toBe('pending');
  });

  it('lets the presentity always see itself, even against a block rule', () => {
    expect(decide('sip:Alice@Example.com;transport=tls', [{ pattern: '*', action: 'block' }])).toBe('allow');
    expect(
      decide('alice@example.com', [{ pattern: 'alice@example.com', action: 'block' }], {
        sameDomainDefault: false,
      }),
    ).toBe('allow');
  });

  it('never allows an empty or domain-only watcher by organisation', () => {
    expect(decide('', [])).toBe('pending');
    expect(decide('sip:example.com', [])).toBe('pending');
  });
});

describe('authorizeWatcher rules', () => {
  it('applies allow and block rules, polite by default', () => {
    expect(decide('carol@partner.org', [{ pattern: 'partner.org', action: 'allow' }])).toBe('allow');
    expect(decide('bob@example.com', [{ pattern: 'sip:bob@example.com', action: 'block' }])).toBe(
      'polite-block',
    );
    expect(
      decide('bob@example.com', [{ pattern: 'bob@example.com', action: 'block' }], {
        blockedWatchers: 'block',
      }),
    ).toBe('block');
  });

  it('the most specific rule wins: address > domain > *.domain > *', () => {
    const rules: AccessRule[] = [
      { pattern: '*', action: 'block' },
      { pattern: '*.partner.org', action: 'allow' },
      { pattern: 'partner.org', action: 'block' },
      { pattern: 'vip@partner.org', action: 'allow' },
      { pattern: 'spy@sales.partner.org', action: 'block' },
    ];
    expect(decide('vip@partner.org', rules)).toBe('allow');
    expect(decide('other@partner.org', rules)).toBe('polite-block');
    expect(decide('x@eu.partner.org', rules)).toBe('allow');
    expect(decide('spy@sales.partner.org', rules)).toBe('polite-block');
    expect(decide('x@elsewhere.com', rules)).toBe('polite-block');
    // '*' also overrides the same-organisation default
    expect(decide('bob@example.com', rules)).toBe('polite-block');
  });

  it('block beats allow at the same specificity, in any order', () => {
    const a: AccessRule[] = [
      { pattern: 'partner.org', action: 'allow' },
      { pattern: 'PARTNER.org', action: 'block' },
    ];
    expect(decide('x@partner.org', a)).toBe('polite-block');
    expect(decide('x@partner.org', [...a].reverse())).toBe('polite-block');
    const b: AccessRule[] = [
      { pattern: 'sip:x@partner.org', action: 'allow' },
      { pattern: 'x@partner.org', action: 'block' },
    ];
    expect(decide('x@partner.org', b)).toBe('polite-block');
    expect(decide('x@partner.org', [...b].reverse())).toBe('polite-block');
  });

  it('an allow on the address beats a block on the domain', () => {
    const rules: AccessRule[] = [
      { pattern: 'example.com', action: 'block' },
      { pattern: 'bob@example.com', action: 'allow' },
    ];
    expect(decide('bob@example.com', rules)).toBe('allow');
    expect(decide('eve@example.com', rules)).toBe('polite-block');
  });

  it('matches watchers given as name-addr or URI with port and parameters', () => {
    const rules: AccessRule[] = [{ pattern: 'bob@partner.org', action: 'allow' }];
    expect(decide('"Bob" <sip:Bob@Partner.org:5061;transport=tls>', rules)).toBe('allow');
    expect(decide('sips:bob@partner.org?subject=hi', rules)).toBe('allow');
    expect(decide('sip:b%6Fb@partner.org', rules)).toBe('allow');
  });

  it('ignores unusable patterns', () => {
    const rules: AccessRule[] = [
      { pattern: '', action: 'block' },
      { pattern: 'bob@', action: 'block' },
      { pattern: 'b*b@example.com', action: 'block' },
      { pattern: 'not a domain', action: 'block' },
    ];
    expect(decide('bob@example.com', rules)).toBe('allow');
  });

  it('does not confuse a domain with a suffix of another', () => {
    expect(decide('x@evilpartner.org', [{ pattern: 'partner.org', action: 'allow' }])).toBe('pending');
    expect(decide('x@evilpartner.org', [{ pattern: '*.partner.org', action: 'allow' }])).toBe('pending');
    expect(decide('x@partner.org', [{ pattern: '*.partner.org', action: 'allow' }])).toBe('pending');
  });
});

describe('normalizeAddress and parseAccessPattern', () => {
  it('normalizes addresses', () => {
    expect(normalizeAddress('sip:Bob@Example.com')).toBe('bob@example.com');
    expect(normalizeAddress('<sips:bob@example.com:5061>')).toBe('bob@example.com');
    expect(normalizeAddress('pres:bob@example.com')).toBe('bob@example.com');
    expect(normalizeAddress('bob@[2001:db8::1]:5060')).toBe('bob@[2001:db8::1]');
    expect(normalizeAddress('sip:example.com;lr')).toBe('example.com');
  });

  it('classifies patterns', () => {
    expect(parseAccessPattern('*')).toEqual({ kind: 'everybody', specificity: 0 });
    expect(parseAccessPattern('*.Example.com')).toEqual({
      kind: 'subdomains',
      value: 'example.com',
      specificity: 1,
    });
    expect(parseAccessPattern('example.com')).toEqual({
      kind: 'domain',
      value: 'example.com',
      specificity: 2,
    });
    expect(parseAccessPattern('@example.com')).toEqual({
      kind: 'domain',
      value: 'example.com',
      specificity: 2,
    });
    expect(parseAccessPattern('sip:Bob@example.com')).toEqual({
      kind: 'address',
      value: 'bob@example.com',
      specificity: 3,
    });
    for (const bad of ['', ' ', '*.', 'a b', 'bob@', '@', 'x@*.com', 'exa mple.com']) {
      expect(parseAccessPattern(bad), bad).toBeUndefined();
    }
  });
});
