import { describe, expect, it } from 'vitest';
import {
  formatIpv6Address,
  hostKey,
  hostReference,
  isIpv4Address,
  isIpv6Address,
  parseIpv6Address,
} from '../../src/sip/host.js';
import { parseMessage } from '../../src/sip/parser.js';
import { parseUri } from '../../src/sip/uri.js';
import { parseVia } from '../../src/sip/via.js';
import { ipv6 } from './ipv6-torture.js';

function parseOk(buf: Buffer) {
  const result = parseMessage(buf);
  if (!result.ok) throw new Error(`expected a message, got ${result.status} ${result.reason}`);
  return result.message;
}

describe('RFC 5118 IPv6 torture messages', () => {
  it('4.1 ipv6-good: IPv6 references in Request-URI, Via and Contact', () => {
    const m = parseOk(ipv6['ipv6-good']);
    expect(m.requestUri).toMatchObject({ host: '[2001:db8::10]' });
    expect(m.requestUri?.port).toBeUndefined();
    expect(m.topVia).toMatchObject({ host: '[2001:db8::9:1]', branch: 'z9hG4bKas3-111' });
    expect(m.topVia.port).toBeUndefined();
    expect(m.contactUris[0]).toMatchObject({ user: 'caller', host: '[2001:db8::1]' });
  });

  it('4.2 ipv6-bad: an IPv6 address without brackets in the Request-URI is 400', () => {
    const result = parseMessage(ipv6['ipv6-bad']);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.status).toBe(400);
  });

  it('4.3 port-ambiguous: everything inside the brackets is the address', () => {
    const uri = parseOk(ipv6['port-ambiguous']).requestUri;
    expect(uri?.host).toBe('[2001:db8::10:5070]');
    expect(uri?.port).toBeUndefined();
  });

  it('4.4 port-unambiguous: the port follows the closing bracket', () => {
    const uri = parseOk(ipv6['port-unambiguous']).requestUri;
    expect(uri?.host).toBe('[2001:db8::10]');
    expect(uri?.port).toBe(5070);
  });

  it('4.5 received with and without brackets name the same address', () => {
    const withDelim = parseOk(ipv6['via-received-param-with-delim']).topVia;
    const noDelim = parseOk(ipv6['via-received-param-no-delim']).topVia;
    expect(withDelim.received).toBe('[2001:db8::9:255]');
    expect(noDelim.received).toBe('2001:db8::9:255');
    expect(hostKey(withDelim.received!)).toBe(hostKey(noDelim.received!));
    expect(withDelim.host).toBe('[2001:db8::9:1]');
  });

  it('4.6 ipv6-in-sdp and 4.8 mult-ip-in-sdp: bodies come back byte for byte', () => {
    for (const name of ['ipv6-in-sdp', 'mult-ip-in-sdp'] as const) {
      const m = parseOk(ipv6[name]);
      expect(m.body.toString()).toContain('c=IN IP6 2001:db8::');
      expect(m.toBuffer().equals(ipv6[name])).toBe(true);
      expect(m.requestUri?.host).toBe('[2001:db8::10]');
    }
  });

  it('4.7 mult-ip-in-header: IPv6 and IPv4 in one Via list and one Contact list', () => {
    const m = parseOk(ipv6['mult-ip-in-header']);
    expect(m.vias.map((v) => [v.transport, v.host, v.port])).toEqual([
      ['UDP', '[2001:db8::9:1]', 6050],
      ['UDP', '192.0.2.1', undefined],
      ['TCP', '[2001:db8::9:255]', undefined],
    ]);
    expect(m.vias[2].received).toBe('192.0.2.200');
    expect(m.contactUris.map((u) => [u?.host, u?.port])).toEqual([
      ['[2001:db8::9:1]', 6050],
      ['192.0.2.1', undefined],
    ]);
  });

  it('4.9 ipv4-mapped-ipv6: mapped addresses in Via, Contact and SDP', () => {
    const m = parseOk(ipv6['ipv4-mapped-ipv6']);
    expect(m.vias.map((v) => [v.host, v.port])).toEqual([
      ['[::ffff:192.0.2.10]', 19823],
      ['[::ffff:192.0.2.2]', undefined],
    ]);
    expect(m.contactUris[0]?.host).toBe('[::ffff:192.0.2.2]');
    expect(m.body.toString()).toContain('c=IN IP6 ::ffff:192.0.2.2');
  });

  it('4.10 three colons before an embedded IPv4 address are tolerated, and mean the two-colon address', () => {
    const bug = parseOk(ipv6['ipv6-bug-abnf-3-colons']);
    const correct = parseOk(ipv6['ipv6-correct-abnf-2-colons']);
    expect(bug.requestUri?.host).toBe('[2001:db8:::192.0.2.1]');
    expect(correct.requestUri?.host).toBe('[2001:db8::192.0.2.1]');
    expect(hostKey(bug.requestUri!.host)).toBe(hostKey(correct.requestUri!.host));
    expect(hostKey(bug.topVia.host)).toBe('2001:db8::c000:201');
  });

  it('every valid case serializes back byte for byte', () => {
    for (const [name, buf] of Object.entries(ipv6)) {
      if (name === 'ipv6-bad') continue;
      expect(parseOk(buf).toBuffer().equals(buf), name).toBe(true);
    }
  });
});

describe('IPv6 references in URIs and Vias', () => {
  it('rejects brackets that do not hold an IPv6 address', () => {
    for (const bad of [
      'sip:[::1',
      'sip:[]',
      'sip:[1:2]',
      'sip:[1::2::3]',
      'sip:[12345::1]',
      'sip:[1:2:3:4:5:6:7:8:9]',
      'sip:[::1.2.3]',
      'sip:[::256.1.1.1]',
      'sip:[g::1]',
      'sip:[1:::2]',
      'sip:[fe80::1%eth0]',
    ]) {
      expect(parseUri(bad), bad).toBeUndefined();
    }
    expect(parseVia('SIP/2.0/UDP [1::2::3];branch=z9hG4bK1')).toBeUndefined();
    expect(parseVia('SIP/2.0/UDP [::1;branch=z9hG4bK1')).toBeUndefined();
  });

  it('accepts the shapes RFC 4291 allows', () => {
    for (const good of [
      'sip:[::1]',
      'sip:[::]:5060',
      'sip:u@[2001:DB8:0:0:8:800:200C:417A]',
      'sip:[1:2:3:4:5:6:7::]',
      'sip:[::2:3:4:5:6:7:8]',
      'sip:[1:2:3:4:5:6:1.2.3.4]',
      'sip:[::ffff:10.0.0.1];transport=tcp',
    ]) {
      expect(parseUri(good), good).toBeDefined();
    }
    expect(parseVia('SIP/2.0/TCP [::1]:5060;rport=5060;received=::1;branch=z9hG4bK1')).toMatchObject({
      host: '[::1]',
      port: 5060,
      received: '::1',
      rport: 5060,
    });
  });
});

describe('host literals', () => {
  it('IPv4 addresses', () => {
    expect(isIpv4Address('192.0.2.1')).toBe(true);
    expect(isIpv4Address('255.255.255.255')).toBe(true);
    for (const bad of ['256.0.0.1', '1.2.3', '1.2.3.4.5', '1..2.3', '1.2.3.4 ', '1234.1.1.1', '']) {
      expect(isIpv4Address(bad), bad).toBe(false);
    }
  });

  it('IPv6 addresses parse to their groups', () => {
    expect(parseIpv6Address('::1')).toEqual([0, 0, 0, 0, 0, 0, 0, 1]);
    expect(parseIpv6Address('2001:db8::9:1')).toEqual([0x2001, 0xdb8, 0, 0, 0, 0, 9, 1]);
    expect(parseIpv6Address('::ffff:192.0.2.1')).toEqual([0, 0, 0, 0, 0, 0xffff, 0xc000, 0x201]);
    expect(parseIpv6Address(':::192.0.2.1')).toEqual([0, 0, 0, 0, 0, 0, 0xc000, 0x201]);
    expect(isIpv6Address('1:2:3:4:5:6:7:8')).toBe(true);
    expect(isIpv6Address('1:2:3:4:5:6:7::')).toBe(true);
    // "::" stands for at least one group: nine groups in all is too many.
    expect(isIpv6Address('1:2:3:4:5:6:7:8::')).toBe(false);
    expect(isIpv6Address('1:2:3:4:5:6:7:1.2.3.4')).toBe(false);
    expect(isIpv6Address('example.com')).toBe(false);
  });

  it('RFC 5952 text, the way Node reports peers', () => {
    const text = (a: string) => formatIpv6Address(parseIpv6Address(a)!);
    expect(text('0:0:0:0:0:0:0:1')).toBe('::1');
    expect(text('2001:DB8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1');
    expect(text('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1');
    expect(text('0:0:0:0:0:0:0:0')).toBe('::');
    expect(text('fe80:0:0:0:0:0:0:0')).toBe('fe80::');
    expect(text('::ffff:c000:0201')).toBe('::ffff:192.0.2.1');
    expect(text('2001:0db8:0000:0000:0000:ff00:0042:8329')).toBe('2001:db8::ff00:42:8329');
  });

  it('hostKey makes every spelling of a host one key; hostReference brackets IPv6', () => {
    expect(hostKey('[2001:DB8:0::1]')).toBe('2001:db8::1');
    expect(hostKey('2001:db8::1')).toBe('2001:db8::1');
    expect(hostKey('Example.COM')).toBe('example.com');
    expect(hostKey('192.0.2.1')).toBe('192.0.2.1');
    expect(hostReference('::1')).toBe('[::1]');
    expect(hostReference('[::1]')).toBe('[::1]');
    expect(hostReference('192.0.2.1')).toBe('192.0.2.1');
  });
});
