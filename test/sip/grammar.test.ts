import { describe, expect, it } from 'vitest';
import { parseCSeq } from '../../src/sip/cseq.js';
import { splitCommaList } from '../../src/sip/lexer.js';
import { formatNameAddr, parseNameAddr } from '../../src/sip/nameaddr.js';
import { formatParams, parseParams, unquoteParam } from '../../src/sip/params.js';
import { formatUri, parseUri, uriAor } from '../../src/sip/uri.js';
import { formatVia, parseVia } from '../../src/sip/via.js';

describe('URIs (RFC 3261 19.1)', () => {
  it('parses every part of a SIP URI', () => {
    expect(
      parseUri(
        'sips:alice:secret@Example.COM:5061;transport=tls;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent',
      ),
    ).toEqual({
      scheme: 'sips',
      user: 'alice',
      password: 'secret',
      host: 'Example.COM',
      port: 5061,
      params: { transport: 'tls', lr: null, maddr: '239.255.255.1' },
      headers: { subject: 'project%20x', priority: 'urgent' },
    });
  });

  it('decodes escapes in the user part and re-escapes on format', () => {
    const uri = parseUri('sip:%61lice%20smith@example.com')!;
    expect(uri.user).toBe('alice smith');
    expect(formatUri(uri)).toBe('sip:alice%20smith@example.com');
    expect(parseUri('sip:%E2%82%AC@example.com')?.user).toBe('€');
    expect(formatUri({ scheme: 'sip', user: '€', host: 'example.com', params: {}, headers: {} })).toBe(
      'sip:%E2%82%AC@example.com',
    );
  });

  it('handles IPv6 references', () => {
    expect(parseUri('sip:[2001:db8::10]:5070')).toMatchObject({ host: '[2001:db8::10]', port: 5070 });
    expect(parseUri('sip:bob@[2001:db8::10];transport=tcp')).toMatchObject({
      user: 'bob',
      host: '[2001:db8::10]',
    });
    expect(parseUri('sip:[2001:db8::10')).toBeUndefined();
  });

  it('parses tel URIs (RFC 3966)', () => {
    expect(parseUri('tel:+1-201-555-0123;phone-context=example.com')).toEqual({
      scheme: 'tel',
      host: '+1-201-555-0123',
      params: { 'phone-context': 'example.com' },
      headers: {},
    });
    expect(formatUri(parseUri('tel:+1-201-555-0123')!)).toBe('tel:+1-201-555-0123');
  });

  it('rejects malformed URIs and other schemes', () => {
    for (const bad of [
      'mailto:a@example.com',
      'http://example.com',
      'sip:',
      'sip:@example.com',
      'sip:alice@',
      'sip:alice@example.com:99999',
      'sip:alice@example.com:abc',
      'sip:alice@exa mple.com',
      'sip:%zzlice@example.com',
      '<sip:alice@example.com>',
      'sip:alice@example.com;;lr',
      'sip:alice@example.com?noequals',
    ]) {
      expect(parseUri(bad), bad).toBeUndefined();
    }
  });

  it('round-trips through format', () => {
    for (const text of [
      'sip:alice@example.com',
      'sip:example.com:5060;lr',
      'sips:bob@[::1]:5061;transport=tls?x=y&a=b',
    ]) {
      expect(formatUri(parseUri(text)!)).toBe(text);
    }
  });

  it('gives the address-of-record key', () => {
    expect(uriAor(parseUri('sip:Alice@EXAMPLE.com:5060;transport=tcp')!)).toBe('Alice@example.com');
    expect(uriAor(parseUri('sip:%61lice@example.com')!)).toBe('alice@example.com');
    expect(uriAor(parseUri('sip:Example.com')!)).toBe('example.com');
  });
});

describe('name-addr (RFC 3261 20.10)', () => {
  it('parses quoted display names with escapes and UTF-8', () => {
    expect(parseNameAddr('"Bob \\"the\\" Builder" <sip:bob@example.com>;tag=x1')).toEqual({
      displayName: 'Bob "the" Builder',
      uri: 'sip:bob@example.com',
      params: { tag: 'x1' },
      tag: 'x1',
    });
    expect(parseNameAddr('"Zoë 山田" <sip:zoe@example.com>')?.displayName).toBe('Zoë 山田');
  });

  it('parses token display names and bare addr-specs', () => {
    expect(parseNameAddr('Alice   Smith <sip:alice@example.com>')?.displayName).toBe('Alice Smith');
    expect(parseNameAddr('<sip:alice@example.com;transport=tcp>;expires=60')).toEqual({
      uri: 'sip:alice@example.com;transport=tcp',
      params: { expires: '60' },
    });
    // RFC 3261 20.10: after a bare addr-spec, parameters belong to the header.
    expect(parseNameAddr('sip:alice@example.com;tag=88;expires=60')).toEqual({
      uri: 'sip:alice@example.com',
      params: { tag: '88', expires: '60' },
      tag: '88',
    });
  });

  it('keeps quoted parameter values, including <> and ; inside quotes', () => {
    const n = parseNameAddr(
      '<sip:a@192.0.2.1>;+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>";reg-id=1',
    )!;
    expect(n.params['+sip.instance']).toBe('"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"');
    expect(unquoteParam(n.params['+sip.instance'])).toBe('<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>');
  });

  it('rejects malformed values', () => {
    for (const bad of [
      '"unterminated <sip:a@example.com>',
      'Bell, Alexander <sip:a@example.com>',
      '< sip:a@example.com >',
      '<sip:a@example.com',
      'sip:a@example.com?x=y',
      '<sip:a@example.com>;;',
      '<sip:a@example.com> junk',
      '',
      '<>',
    ]) {
      expect(parseNameAddr(bad), bad).toBeUndefined();
    }
  });

  it('formats in name-addr form, tag field winning', () => {
    expect(
      formatNameAddr({
        displayName: 'Al "x"',
        uri: 'sip:al@example.com',
        params: { tag: 'old', q: '1' },
        tag: 'new',
      }),
    ).toBe('"Al \\"x\\"" <sip:al@example.com>;q=1;tag=new');
    const n = parseNameAddr('sip:alice@example.com;tag=1')!;
    expect(parseNameAddr(formatNameAddr(n))).toEqual(n);
  });
});

describe('Via (RFC 3261 20.42)', () => {
  it('parses sent-protocol, sent-by and the well-known params', () => {
    expect(
      parseVia(
        'SIP/2.0/UDP pc33.example.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1;rport=61000;ttl=1',
      ),
    ).toEqual({
      protocol: 'SIP/2.0/UDP',
      transport: 'UDP',
      host: 'pc33.example.com',
      port: 5066,
      params: { branch: 'z9hG4bK776asdhds', received: '192.0.2.1', rport: '61000', ttl: '1' },
      branch: 'z9hG4bK776asdhds',
      received: '192.0.2.1',
      rport: 61000,
    });
    expect(parseVia('sip/2.0/ws df7jal23ls0d.invalid;rport;branch=z9hG4bKhjhs8ass877')).toMatchObject({
      protocol: 'SIP/2.0/WS',
      transport: 'WS',
      rport: null,
    });
  });

  it('allows LWS around the slashes of sent-protocol', () => {
    expect(parseVia('SIP/2.0/ udp host.example.com')).toMatchObject({
      protocol: 'SIP/2.0/UDP',
      host: 'host.example.com',
    });
    expect(parseVia('SIP / 2.0 / tls host.example.com:5061')).toMatchObject({
      protocol: 'SIP/2.0/TLS',
      port: 5061,
    });
  });

  it('formats with branch/received/rport overrides (RFC 3581)', () => {
    const via = parseVia('SIP/2.0/TCP 10.0.0.5:5060;rport;branch=z9hG4bKabc')!;
    via.received = '198.51.100.7';
    via.rport = 40211;
    expect(formatVia(via)).toBe(
      'SIP/2.0/TCP 10.0.0.5:5060;rport=40211;branch=z9hG4bKabc;received=198.51.100.7',
    );
  });

  it('rejects malformed values', () => {
    for (const bad of [
      'SIP/2.0/UDP',
      'SIP/2.0 host',
      'SIP/2.0/UDPhost.example.com',
      'SIP/2.0/UDP host;;',
      'SIP/2.0/UDP host:70000',
      'SIP/2.0/UDP host;branch',
      'SIP/2.0/UDP host;rport=abc',
      'SIP/2.0/UDP [2001:db8::1',
    ]) {
      expect(parseVia(bad), bad).toBeUndefined();
    }
  });
});

describe('small grammars', () => {
  it('params', () => {
    expect(parseParams(' ; A = 1 ;b; c="x;y"', 0)).toEqual({
      params: { a: '1', b: null, c: '"x;y"' },
      end: 20,
    });
    expect(parseParams(';a=1, next', 0)?.end).toBe(4);
    expect(formatParams({ a: '1', b: null })).toBe(';a=1;b');
  });

  it('CSeq', () => {
    expect(parseCSeq('0009 INVITE')).toEqual({ seq: 9, method: 'INVITE' });
    expect(parseCSeq('1\tREGISTER ')).toEqual({ seq: 1, method: 'REGISTER' });
    expect(parseCSeq('36893488147419103232 REGISTER')).toBeUndefined();
    expect(parseCSeq('1INVITE')).toBeUndefined();
  });

  it('comma lists', () => {
    expect(splitCommaList('a, "b,c" <sip:x,y>, , d')).toEqual(['a', '"b,c" <sip:x,y>', 'd']);
  });
});

describe('identifiers', () => {
  it('branches carry the magic cookie and tags are tokens, all distinct', async () => {
    const { hasRfc3261Branch } = await import('../../src/sip/via.js');
    const { createBranch, createTag } = await import('../../src/sip/ids.js');
    const { isToken } = await import('../../src/sip/lexer.js');
    const branches = new Set(Array.from({ length: 1000 }, () => createBranch()));
    expect(branches.size).toBe(1000);
    for (const b of branches) {
      expect(isToken(b)).toBe(true);
      expect(
        hasRfc3261Branch({ protocol: 'SIP/2.0/TCP', transport: 'TCP', host: 'h', params: {}, branch: b }),
      ).toBe(true);
    }
    const tag = createTag();
    expect(isToken(tag)).toBe(true);
    expect(tag).not.toBe(createTag());
  });

  it('recognises the branches this process made, and only those', async () => {
    const { createBranch, isOwnBranch } = await import('../../src/sip/ids.js');
    const branch = createBranch();
    expect(isOwnBranch(branch)).toBe(true);
    expect(isOwnBranch(undefined)).toBe(false);
    expect(isOwnBranch('z9hG4bK')).toBe(false);
    expect(isOwnBranch(branch.slice(0, 13))).toBe(false);
    expect(isOwnBranch('z9hG4bK-524287-1---a7c3d1f0e2b4')).toBe(false);
  });
});

describe('hostile parameter names', () => {
  it('keeps prototype names as data and ignores __proto__', () => {
    const n = parseNameAddr('<sip:a@example.com>;constructor=1;__proto__=x;tostring')!;
    expect(Object.getPrototypeOf(n.params)).toBe(Object.prototype);
    expect(n.params.constructor).toBe('1');
    expect(n.params.tostring).toBeNull();
    const uri = parseUri('sip:a@example.com;__proto__=1;hasOwnProperty=2?__proto__=3')!;
    expect(Object.getPrototypeOf(uri.params)).toBe(Object.prototype);
    expect(uri.params.hasownproperty).toBe('2');
    expect(Object.keys(uri.headers)).toEqual([]);
  });
});
