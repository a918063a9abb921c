import { describe, expect, it } from 'vitest';
import { parseMessage } from '../../src/sip/parser.js';
import { createErrorResponseFromPartial } from '../../src/sip/response.js';
import { parseUri, uriAor } from '../../src/sip/uri.js';
import { hasRfc3261Branch, parseVia } from '../../src/sip/via.js';
import { invalid, sip, valid } from './torture.js';

function parseOk(buf: Buffer) {
  const result = parseMessage(buf);
  if (!result.ok) throw new Error(`expected a message, got ${result.status} ${result.reason}`);
  return result.message;
}

describe('RFC 4475 valid messages', () => {
  it('wsinv: LWS, folding, case and compact forms', () => {
    const m = parseOk(valid.wsinv);
    expect(m.method).toBe('INVITE');
    expect(m.uri).toBe('sip:vivekg@chair-dnrc.example.com;unknownparam');
    expect(m.requestUri?.params).toEqual({ unknownparam: null });
    expect(m.to.uri).toBe('sip:vivekg@chair-dnrc.example.com');
    expect(m.to.tag).toBe('1918181833n');
    expect(m.from.displayName).toBe('J Rosenberg \\"');
    expect(m.from.tag).toBe('98asjd8');
    expect(m.maxForwards).toBe(68);
    expect(m.callId).toBe('wsinv.ndaksdj@192.0.2.1');
    expect(m.cseq).toEqual({ seq: 9, method: 'INVITE' });
    expect(m.get('subject')).toBe('');
    expect(m.get('newfangledheader')).toBe('newfangled value continued newfangled value');
    expect(m.get('UnknownHeaderWithUnusualValue')).toBe(';;,,;;,;');
    expect(m.contentType).toBe('application/sdp');
    expect(m.getAll('route')).toEqual(['<sip:services.example.com;lr;unknownwith=value;unknown-no-value>']);
    const vias = m.getAll('via');
    expect(vias).toHaveLength(3);
    expect(m.topVia).toMatchObject({
      protocol: 'SIP/2.0/UDP',
      transport: 'UDP',
      host: '192.0.2.2',
      branch: '390skdjuw',
    });
    expect(m.vias.map((v) => [v.transport, v.host, v.branch])).toEqual([
      ['UDP', '192.0.2.2', '390skdjuw'],
      ['TCP', 'spindle.example.com', 'z9hG4bK9ikj8'],
      ['UDP', '192.168.255.111', 'z9hG4bK30239'],
    ]);
    const [contact] = m.contacts;
    expect(contact.displayName).toBe('Quoted string ""');
    expect(contact.uri).toBe('sip:jdrosen@example.com');
    expect(contact.params).toEqual({ newparam: 'newvalue', secondparam: null, q: '0.33' });
    expect(m.body.toString()).toContain('a=rtpmap:31 LPC');
    expect(m.body.length).toBe(Number(m.get('content-length')));
  });

  it('intmeth: unusual but valid characters everywhere', () => {
    const m = parseOk(valid.intmeth);
    expect(m.method).toBe("!interesting-Method0123456789_*+`.%indeed'~");
    expect(m.cseq.method).toBe(m.method);
    const uri = m.requestUri;
    expect(uri?.user).toBe("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    expect(uri?.password).toBe("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    expect(uri?.host).toBe('example.com');
    expect(m.to.displayName).toBe('BEL:\x07 NUL:\x00 DEL:\x7F');
    expect(m.from.displayName).toBe("token1~` token2'+_ token3*%!.-");
    expect(m.from.tag).toBe("_token~1'+`*%!-.");
    expect(m.from.params["fromparam''~+*_!.-%"]).toBe('"праведный"');
    expect(m.callId).toBe('intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{');
    expect(m.get("extensionHeader-!.%*+_`'~")).toBe('大停電');
    expect(m.topVia.branch).toBe("z9hG4bK-.!%66*_+`'~");
  });

  it('esc01: escaped characters in URIs are decoded in the user part', () => {
    const m = parseOk(valid.esc01);
    expect(m.requestUri?.user).toBe('sips:user@example.com');
    expect(m.requestUri?.host).toBe('example.net');
    expect(uriAor(parseUri(m.to.uri)!)).toBe('user@example.com');
    expect(parseUri(m.from.uri)?.user).toBe('I have spaces');
    const contact = parseUri(m.contacts[0].uri)!;
    expect(contact.user).toBe('caller');
    expect(contact.params['n%61me']).toBe('v%61lue%25%34%31');
    expect(m.contentType).toBe('application/sdp');
  });

  it('escnull: escaped NULs in URIs', () => {
    const m = parseOk(valid.escnull);
    expect(parseUri(m.to.uri)?.user).toBe('null-\0-null');
    expect(m.contacts.map((c) => parseUri(c.uri)?.user)).toEqual(['\0', '\0\0']);
  });

  it('esc02: % that is not an escape, in method, display name and header name', () => {
    const m = parseOk(valid.esc02);
    expect(m.method).toBe('RE%47IST%45R');
    expect(m.to.displayName).toBe('%Z%45');
    expect(m.topVia.rport).toBeNull();
    expect(m.getAll('contact')).toEqual(['<sip:alias1@host1.example.com>', '<sip:alias3@host3.example.com>']);
    expect(m.get('c%6fntact')).toBe('<sip:alias2@host2.example.com>');
  });

  it('lwsdisp: no LWS between display name and <', () => {
    const m = parseOk(valid.lwsdisp);
    expect(m.from).toEqual({
      displayName: 'caller',
      uri: 'sip:caller@example.com',
      params: { tag: '323' },
      tag: '323',
    });
  });

  it('longreq: long values and 40 Vias', () => {
    const m = parseOk(valid.longreq);
    expect(m.getAll('via')).toHaveLength(40);
    expect(m.to.displayName).toMatch(/^I have a user name of (extreme){40} proportion$/);
    expect(parseUri(m.to.uri)?.port).toBe(6000);
    expect(m.from.tag).toMatch(/^12(982){120}424$/);
    expect(m.callId.length).toBeGreaterThan(480);
    expect(m.toBuffer().equals(valid.longreq)).toBe(true);
  });

  it('dblreq: bytes after Content-Length in a datagram are ignored', () => {
    const m = parseOk(valid.dblreq);
    expect(m.method).toBe('REGISTER');
    expect(m.body.length).toBe(0);
    expect(m.contacts[0].uri).toBe('sip:j.user@host.example.com');
  });

  it('semiuri: semicolons in the user part', () => {
    const m = parseOk(valid.semiuri);
    expect(m.requestUri).toMatchObject({ user: 'user;par=u@example.net', host: 'example.com', params: {} });
    expect(m.getAll('accept')).toEqual([
      'application/sdp',
      'application/pkcs7-mime',
      'multipart/mixed',
      'multipart/signed',
      'message/sip',
      'message/sipfrag',
    ]);
  });

  it('transports: known and unknown transports', () => {
    const m = parseOk(valid.transports);
    expect(m.vias.map((v) => v.transport)).toEqual(['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'TCP']);
    expect(m.callId).toBe('transports.kijh4akdnaqjkwendsasfdj');
  });

  it('mpart01: binary multipart body kept byte for byte', () => {
    const m = parseOk(valid.mpart01);
    expect(m.contentType).toBe('multipart/mixed');
    expect(m.get('content-type')).toBe('multipart/mixed;boundary=7a9cbec02ceef655');
    const start = valid.mpart01.indexOf('\r\n\r\n') + 4;
    expect(m.body.equals(valid.mpart01.subarray(start))).toBe(true);
    expect(m.body.includes(Buffer.from([0x00, 0x00, 0x0d, 0x0a, 0x0d, 0x0a, 0xff]))).toBe(true);
  });

  it('unreason: UTF-8 reason phrase', () => {
    const m = parseOk(valid.unreason);
    expect(m.isRequest).toBe(false);
    expect(m.status).toBe(200);
    expect(m.reason).toBe('= 2**3 * 5**2 но сто девяносто девять - простое');
    expect(m.toBuffer().equals(valid.unreason)).toBe(true);
  });

  it('noreason: empty reason phrase', () => {
    const m = parseOk(valid.noreason);
    expect(m.status).toBe(100);
    expect(m.reason).toBe('');
    expect(m.toBuffer().equals(valid.noreason)).toBe(true);
  });

  it('bext01: unknown Require/Proxy-Require values are parsed as lists', () => {
    const m = parseOk(valid.bext01);
    expect(m.getAll('require')).toEqual(['nothingSupportsThis', 'nothingSupportsThisEither']);
    expect(m.getAll('proxy-require')).toEqual(['noProxiesSupportThis', 'norDoAnyProxiesSupportThis']);
  });

  it('bcast: a broadcast Via parses; the sent-by is visible to the transport', () => {
    const m = parseOk(valid.bcast);
    expect(m.vias[1].host).toBe('255.255.255.255');
  });

  it('badbranch: a bare magic cookie is not an RFC 3261 branch', () => {
    const m = parseOk(valid.badbranch);
    expect(m.topVia.branch).toBe('z9hG4bK');
    expect(hasRfc3261Branch(m.topVia)).toBe(false);
    expect(hasRfc3261Branch(parseVia('SIP/2.0/UDP h;branch=z9hG4bK776asdhds')!)).toBe(true);
  });

  it('unksm2, regescrt, cparam01, sipssch, inv2543, zeromf: more valid corners', () => {
    const unk = parseOk(valid.unksm2);
    expect(unk.to.uri).toBe('isbn:2983792873');
    expect(unk.from.uri).toBe('http://www.example.com');
    expect(unk.contacts[0].uri).toBe('name:John_Smith');
    expect(parseUri(parseOk(valid.regescrt).contacts[0].uri)?.headers).toEqual({
      Route: '%3Csip:sip.example.com%3E',
    });
    expect(parseOk(valid.cparam01).contacts[0]).toEqual({
      uri: 'sip:+19725552222@gw1.example.net',
      params: { unknownparam: null },
    });
    expect(parseOk(valid.sipssch).requestUri?.scheme).toBe('sips');
    const old = parseOk(valid.inv2543);
    expect(old.topVia.branch).toBeUndefined();
    expect(old.from.tag).toBeUndefined();
    expect(old.maxForwards).toBeUndefined();
    expect(parseOk(valid.zeromf).maxForwards).toBe(0);
  });

  it('serializes every valid message back byte for byte', () => {
    for (const [name, buf] of Object.entries(valid)) {
      const m = parseOk(buf);
      const out = m.toBuffer();
      if (name === 'dblreq') {
        expect(out.equals(buf.subarray(0, buf.indexOf('\r\n\r\n') + 4))).toBe(true);
      } else {
        expect(out.toString('latin1'), name).toBe(buf.toString('latin1'));
      }
    }
  });
});

describe('RFC 4475 invalid messages', () => {
  for (const [name, testCase] of Object.entries(invalid)) {
    it(`${name}: ${testCase.status}`, () => {
      const result = parseMessage(testCase.message);
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.status).toBe(testCase.status);
      if (testCase.reason) expect(result.reason).toMatch(testCase.reason);
      const response = createErrorResponseFromPartial(result, { toTag: 'abc' });
      if (!testCase.answerable) {
        expect(response).toBeUndefined();
        return;
      }
      expect(response).toBeDefined();
      expect(response!.status).toBe(testCase.status);
      // The response copies the request's headers, malformed ones included (RFC 3261 8.2.6.2).
      const text = response!.toString();
      expect(text.startsWith(`SIP/2.0 ${testCase.status} `)).toBe(true);
      expect(text).toMatch(/\r\nVia: /);
      expect(response!.get('content-length')).toBe('0');
    });
  }
});

describe('other malformed input', () => {
  const base = [
    'OPTIONS sip:user@example.com SIP/2.0',
    'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw',
    'To: sip:user@example.com',
    'From: sip:caller@example.org;tag=33242',
    'Call-ID: c1',
    'CSeq: 1 OPTIONS',
    'Max-Forwards: 70',
    'Content-Length: 0',
  ];
  const without = (name: string) => base.filter((l) => !l.toLowerCase().startsWith(`${name.toLowerCase()}:`));

  it('accepts the base message', () => {
    expect(parseMessage(sip(base)).ok).toBe(true);
  });

  it.each(['Via', 'From', 'To', 'Call-ID', 'CSeq'])('missing %s -> 400 naming it', (name) => {
    const result = parseMessage(sip(without(name)));
    expect(result).toMatchObject({ ok: false, status: 400, reason: `Bad Request - Missing ${name}` });
  });

  it('missing Max-Forwards is tolerated, a malformed one is not', () => {
    expect(parseMessage(sip(without('Max-Forwards'))).ok).toBe(true);
    const bad = [...without('Max-Forwards'), 'Max-Forwards: ten'];
    expect(parseMessage(sip(bad))).toMatchObject({ ok: false, status: 400, reason: /Max-Forwards/ });
    expect(parseMessage(sip([...without('Max-Forwards'), 'Max-Forwards: 256']))).toMatchObject({ ok: false });
  });

  it('garbage start line', () => {
    expect(parseMessage(sip(['HELLO', ...base.slice(1)]))).toMatchObject({ ok: false, status: 400 });
    expect(parseMessage(Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n'))).toMatchObject({
      ok: false,
      status: 400,
    });
  });

  it('missing end of header section', () => {
    expect(parseMessage(Buffer.from(`${base.join('\r\n')}\r\n`))).toMatchObject({ ok: false, status: 400 });
  });

  it('bad CSeq', () => {
    for (const cseq of [
      'CSeq: abc OPTIONS',
      'CSeq: 1',
      'CSeq: 2147483648 OPTIONS',
      'CSeq: -1 OPTIONS',
      'CSeq: 1 OPTIONS x',
    ]) {
      const lines = [...without('CSeq'), cseq];
      expect(parseMessage(sip(lines)), cseq).toMatchObject({ ok: false, status: 400, reason: /CSeq/ });
    }
    expect(parseMessage(sip([...without('CSeq'), 'CSeq: 2147483647 OPTIONS'])).ok).toBe(true);
  });

  it('header line without colon', () => {
    const result = parseMessage(sip([...base.slice(0, 3), 'This is not a header', ...base.slice(3)]));
    expect(result).toMatchObject({ ok: false, status: 400, reason: 'Bad Request - Header Without Colon' });
  });

  it('NUL bytes in the header section', () => {
    const result = parseMessage(sip([...base.slice(0, 3), 'X-Evil: a\0b', ...base.slice(3)]));
    expect(result).toMatchObject({ ok: false, status: 400, reason: /NUL/ });
  });

  it('bare LF line endings', () => {
    const result = parseMessage(Buffer.from(`${base.join('\n')}\r\n\r\n`));
    expect(result).toMatchObject({ ok: false, status: 400 });
  });

  it('non-numeric Content-Length', () => {
    const result = parseMessage(sip([...without('Content-Length'), 'Content-Length: ten']));
    expect(result).toMatchObject({ ok: false, status: 400, reason: /Content-Length/ });
  });

  it('oversized messages and header sections -> 413', () => {
    const big = sip([...without('Content-Length'), 'Content-Length: {CL}'], 'x'.repeat(70000));
    expect(parseMessage(big)).toMatchObject({ ok: false, status: 413 });
    const hugeHeader = sip([...base.slice(0, 3), `X-Big: ${'y'.repeat(40000)}`, ...base.slice(3)]);
    expect(parseMessage(hugeHeader)).toMatchObject({ ok: false, status: 413 });
    expect(parseMessage(hugeHeader, { maxHeaderSize: 50000 }).ok).toBe(true);
  });

  it('a malformed Contact is refused where it matters, ignored in a MESSAGE', () => {
    const lines = (method: string) => [
      `${method} sip:user@example.com SIP/2.0`,
      ...base.slice(1).map((l) => (l.startsWith('CSeq') ? `CSeq: 1 ${method}` : l)),
      'Contact: <sip:broken@',
    ];
    expect(parseMessage(sip(lines('INVITE')))).toMatchObject({ ok: false, status: 400, reason: /Contact/ });
    expect(parseMessage(sip(lines('MESSAGE'))).ok).toBe(true);
  });

  it('datagram without Content-Length takes the rest as body', () => {
    const m = parseOk(sip([...without('Content-Length')], 'hello'));
    expect(m.body.toString()).toBe('hello');
    expect(m.toBuffer().toString()).toContain('Content-Length: 5\r\n\r\nhello');
  });

  it('leading CRLFs before the start line are ignored (RFC 3261 7.5)', () => {
    expect(parseMessage(Buffer.concat([Buffer.from('\r\n\r\n'), sip(base)])).ok).toBe(true);
  });

  it('IPv6 in request-URI and Via', () => {
    const lines = [
      'OPTIONS sip:alice@[2001:db8::1]:5070;transport=tcp SIP/2.0',
      'Via: SIP/2.0/TCP [2001:db8::2]:5061;branch=z9hG4bKv6;received=2001:db8::9;rport=5099',
      ...base.slice(2),
    ];
    const m = parseOk(sip(lines));
    expect(m.requestUri).toMatchObject({
      user: 'alice',
      host: '[2001:db8::1]',
      port: 5070,
      params: { transport: 'tcp' },
    });
    expect(m.topVia).toMatchObject({
      host: '[2001:db8::2]',
      port: 5061,
      received: '2001:db8::9',
      rport: 5099,
    });
  });

  it('never answers an ACK', () => {
    const ack = sip([
      'ACK sip:user@example.com SIP/2.0',
      ...base.slice(1).map((l) => (l.startsWith('CSeq') ? 'CSeq: 1 INVITE' : l)),
    ]);
    const result = parseMessage(ack);
    expect(result).toMatchObject({ ok: false, status: 400, reason: /CSeq/ });
    if (!result.ok) expect(createErrorResponseFromPartial(result)).toBeUndefined();
  });

  it('answers with the partial headers: Via copied, To tag added', () => {
    const result = parseMessage(sip([...without('Max-Forwards'), 'Max-Forwards: x', 'Date: bogus']));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const response = createErrorResponseFromPartial(result, { toTag: 't1' })!;
    const text = response.toString();
    expect(text.startsWith('SIP/2.0 400 Bad Request - Malformed Max-Forwards\r\n')).toBe(true);
    expect(text).toContain('Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw\r\n');
    expect(response.to.tag).toBe('t1');
    expect(response.cseq).toEqual({ seq: 1, method: 'OPTIONS' });
  });

  it('never throws on random mutations', () => {
    const seed = valid.wsinv;
    let state = 42;
    const rand = () => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state;
    };
    for (let n = 0; n < 2000; n++) {
      const copy = Buffer.from(seed);
      for (let k = 0; k < 1 + (n % 8); k++) copy[rand() % copy.length] = rand() % 256;
      const result = parseMessage(copy);
      if (result.ok) {
        const m = result.message;
        void [m.from, m.to, m.topVia, m.cseq, m.contacts, m.expires, m.requestUri, m.toBuffer()];
      } else {
        createErrorResponseFromPartial(result)?.toBuffer();
      }
    }
  });
});

describe('character sets and keep-alives', () => {
  const lines = (from: string) => [
    'MESSAGE sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKcs',
    `From: ${from};tag=1`,
    'To: <sip:bob@example.com>',
    'Call-ID: cs-1',
    'CSeq: 1 MESSAGE',
    'Content-Length: 0',
  ];

  it('UTF-8 display names are decoded and written back unchanged', () => {
    const buf = sip(lines('"Jürgen Müller 山田" <sip:jm@example.com>'));
    const m = parseOk(buf);
    expect(m.from.displayName).toBe('Jürgen Müller 山田');
    expect(m.toBuffer().equals(buf)).toBe(true);
  });

  it('invalid UTF-8 falls back to latin1 without losing the message', () => {
    const buf = Buffer.from(
      sip(lines('"J\u00fcrgen" <sip:jm@example.com>')).toString('utf8').replace('Jürgen', 'J\u00fcrgen'),
      'latin1',
    );
    expect(buf.includes(Buffer.from([0x4a, 0xfc, 0x72]))).toBe(true);
    const m = parseOk(buf);
    expect(m.from.displayName).toBe('Jürgen');
    expect(parseOk(m.toBuffer()).from.displayName).toBe('Jürgen');
  });

  it('isKeepAlive recognises CRLF-only datagrams', async () => {
    const { isKeepAlive } = await import('../../src/sip/parser.js');
    expect(isKeepAlive(Buffer.from('\r\n\r\n'))).toBe(true);
    expect(isKeepAlive(Buffer.from('\r\n'))).toBe(true);
    expect(isKeepAlive(Buffer.alloc(0))).toBe(false);
    expect(isKeepAlive(valid.lwsdisp)).toBe(false);
  });
});
