import { describe, expect, it } from 'vitest';
import { SipMessage } from '../../src/sip/message.js';
import { parseMessage } from '../../src/sip/parser.js';
import { sip } from './torture.js';

const invite = sip(
  [
    'INVITE sip:bob@example.com SIP/2.0',
    'v: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1, SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKa1',
    'Max-Forwards: 69',
    'Record-Route: <sip:proxy.example.com;lr>',
    'f: "Ålice" <sip:alice@example.com>;tag=1928301774',
    't: <sip:bob@example.com>',
    'i: a84b4c76e66710@pc33.example.com',
    'CSeq: 314159 INVITE',
    'm: <sip:alice@192.0.2.1;transport=tcp>',
    'Expires: 99999999999999',
    'c: application/sdp; charset=utf-8',
    'l: {CL}',
  ],
  'v=0\r\n',
);

function parsed(buf = invite): SipMessage {
  const result = parseMessage(buf);
  if (!result.ok) throw new Error(result.reason);
  return result.message;
}

describe('SipMessage headers', () => {
  it('expands compact forms and matches names case-insensitively', () => {
    const m = parsed();
    expect(m.headers.map((h) => h.name)).toEqual([
      'via',
      'max-forwards',
      'record-route',
      'from',
      'to',
      'call-id',
      'cseq',
      'contact',
      'expires',
      'content-type',
      'content-length',
    ]);
    expect(m.get('Call-ID')).toBe('a84b4c76e66710@pc33.example.com');
    expect(m.get('i')).toBe('a84b4c76e66710@pc33.example.com');
    expect(m.get('CALL-ID')).toBe(m.callId);
    expect(m.from.displayName).toBe('Ålice');
    expect(m.contentType).toBe('application/sdp');
    expect(m.expires).toBe(2 ** 32 - 1);
  });

  it('getAll splits list headers but not commas inside quotes or <>', () => {
    const m = new SipMessage({ method: 'REGISTER', uri: 'sip:example.com' });
    m.append('contact', '"Smith, John" <sip:j@a.example.com;x=1,2>;q=0.5, <sip:j@b.example.com>');
    m.append('contact', 'sip:j@c.example.com');
    m.append('authorization', 'Digest username="j", realm="example.com"');
    expect(m.getAll('contact')).toEqual([
      '"Smith, John" <sip:j@a.example.com;x=1,2>;q=0.5',
      '<sip:j@b.example.com>',
      'sip:j@c.example.com',
    ]);
    expect(m.contacts.map((c) => c.uri)).toEqual([
      'sip:j@a.example.com;x=1,2',
      'sip:j@b.example.com',
      'sip:j@c.example.com',
    ]);
    expect(m.contacts[0].params).toEqual({ q: '0.5' });
    expect(m.getAll('authorization')).toEqual(['Digest username="j", realm="example.com"']);
  });

  it('removeFirst pops the topmost Via of a comma-joined line', () => {
    const m = parsed();
    expect(m.topVia.host).toBe('proxy.example.com');
    expect(m.removeFirst('via')).toBe('SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1');
    expect(m.topVia.host).toBe('192.0.2.1');
    expect(m.removeFirst('via')).toBe('SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKa1');
    expect(m.removeFirst('via')).toBeUndefined();
    expect(m.topVia.host).toBe('');
  });

  it('prepend adds a topmost Via; accessors follow the change', () => {
    const m = parsed();
    m.prepend('via', 'SIP/2.0/TLS edge.example.com;branch=z9hG4bKe1');
    expect(m.topVia).toMatchObject({ transport: 'TLS', host: 'edge.example.com', branch: 'z9hG4bKe1' });
    expect(m.getAll('via')).toHaveLength(3);
    const text = m.toString();
    expect(text.indexOf('Via: SIP/2.0/TLS edge')).toBeLessThan(text.indexOf('v: SIP/2.0/TCP proxy'));
  });

  it('set replaces in place, append goes after the last of its name, remove drops all', () => {
    const m = parsed();
    m.set('Max-Forwards', String(m.maxForwards! - 1));
    expect(m.maxForwards).toBe(68);
    expect(m.headers[1]).toEqual({ name: 'max-forwards', value: '68' });
    m.append('record-route', '<sip:edge.example.com;lr>');
    expect(m.headers[3]).toEqual({ name: 'record-route', value: '<sip:edge.example.com;lr>' });
    m.set('to', '<sip:bob@example.com>;tag=xyz');
    expect(m.to.tag).toBe('xyz');
    m.remove('record-route');
    expect(m.getAll('record-route')).toEqual([]);
    m.append('x-new', 'one');
    expect(m.headers[m.headers.length - 1].name).toBe('x-new');
  });

  it('accessors pick up direct edits of the headers array', () => {
    const m = parsed();
    expect(m.from.tag).toBe('1928301774');
    // Header objects are read-only (responses and clones share them): an edit replaces one.
    const at = m.headers.findIndex((h) => h.name === 'from');
    m.headers[at] = { name: 'from', value: '<sip:carol@example.com>;tag=99' };
    expect(m.from.tag).toBe('99');
    expect(m.toString()).toContain('\r\nFrom: <sip:carol@example.com>;tag=99\r\n');
  });

  it('parses the From, To and Contact URIs once, with their headers, and follows changes', () => {
    const m = parsed();
    const fromUri = m.fromUri;
    expect(fromUri).toMatchObject({ scheme: 'sip', user: 'alice', host: 'example.com' });
    expect(m.fromUri).toBe(fromUri);
    expect(m.toUri).toMatchObject({ user: 'bob', host: 'example.com' });
    expect(m.contactUris).toEqual([
      expect.objectContaining({ host: '192.0.2.1', params: { transport: 'tcp' } }),
    ]);
    expect(m.contactUris).toBe(m.contactUris);
    m.set('from', '<sips:carol@Example.com>;tag=2');
    expect(m.fromUri).toMatchObject({ scheme: 'sips', user: 'carol', host: 'Example.com' });
    m.set('from', '<mailto:carol@example.com>;tag=2');
    expect(m.from.uri).toBe('mailto:carol@example.com');
    expect(m.fromUri).toBeUndefined();
    m.set('to', 'not a name-addr <');
    expect(m.toUri).toBeUndefined();
    m.remove('to');
    expect(m.toUri).toBeUndefined();
    m.set('contact', '*');
    expect(m.contacts).toEqual([{ uri: '*', params: {} }]);
    expect(m.contactUris).toEqual([undefined]);
    m.set('contact', '<sip:a@x.example.com>, <sip:c@>, <sip:b@y.example.com>');
    expect(m.contacts.map((c) => c.uri)).toEqual(['sip:a@x.example.com', 'sip:b@y.example.com']);
    expect(m.contactUris.map((u) => u?.host)).toEqual(['x.example.com', 'y.example.com']);
    expect(m.hasMalformedContact()).toBe(true);
  });

  it('header values cannot inject lines', () => {
    const m = new SipMessage({ status: 200, reason: 'OK' });
    m.set('subject', 'hi\r\nVia: evil');
    expect(m.get('subject')).toBe('hi Via: evil');
    expect(
      m
        .toString()
        .split('\r\n')
        .filter((l) => l.startsWith('Via')),
    ).toEqual([]);
  });
});

describe('SipMessage serialization', () => {
  it('writes untouched headers back byte for byte', () => {
    expect(parsed().toBuffer().equals(invite)).toBe(true);
  });

  it('rewrites changed headers and the start line in canonical spelling', () => {
    const m = parsed();
    m.uri = 'sip:bob@192.0.2.7:5060;transport=tcp';
    m.set('call-id', 'new-id');
    m.set('www-authenticate', 'Digest realm="x"');
    const text = m.toString();
    expect(text.startsWith('INVITE sip:bob@192.0.2.7:5060;transport=tcp SIP/2.0\r\n')).toBe(true);
    expect(text).toContain('\r\nCall-ID: new-id\r\n');
    expect(text).toContain('\r\nWWW-Authenticate: Digest realm="x"\r\n');
    expect(text).toContain('\r\nm: <sip:alice@192.0.2.1;transport=tcp>\r\n');
  });

  it('keeps Content-Length equal to the body length', () => {
    const m = parsed();
    m.body = Buffer.from('v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n');
    const text = m.toString();
    expect(text).toContain(`\r\nContent-Length: ${m.body.length}\r\n\r\nv=0`);
    expect(text).not.toContain('l: ');
    const fresh = SipMessage.request(
      'MESSAGE',
      'sip:bob@example.com',
      [{ name: 'call-id', value: 'x' }],
      Buffer.from('héllo'),
    );
    expect(fresh.toString()).toBe(
      'MESSAGE sip:bob@example.com SIP/2.0\r\nCall-ID: x\r\nContent-Length: 6\r\n\r\nhéllo',
    );
    const round = parseMessage(parsed().toBuffer());
    expect(round.ok).toBe(true);
  });

  it('serializes a response start line', () => {
    const m = SipMessage.response(486, 'Busy Here');
    expect(m.isRequest).toBe(false);
    expect(m.toString()).toBe('SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n');
  });

  it('clone is independent of the original', () => {
    const m = parsed();
    const copy = m.clone();
    copy.prepend('via', 'SIP/2.0/TCP p2.example.com;branch=z9hG4bKc');
    copy.set('to', '<sip:bob@example.com>;tag=2');
    expect(m.getAll('via')).toHaveLength(2);
    expect(m.to.tag).toBeUndefined();
    expect(copy.to.tag).toBe('2');
    expect(m.toBuffer().equals(invite)).toBe(true);
  });
});

describe('header names that collide with Object.prototype', () => {
  it('are plain names', () => {
    const m = new SipMessage({ status: 200, reason: 'OK' });
    m.set('constructor', 'a');
    m.set('toString', 'b');
    expect(m.toString()).toBe('SIP/2.0 200 OK\r\nConstructor: a\r\nTostring: b\r\nContent-Length: 0\r\n\r\n');
  });
});
