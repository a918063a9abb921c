/**
 * Messages equivalent to the RFC 4475 "SIP Torture Test Messages", named after the RFC's
 * tags. Each is rebuilt here to exercise the same trick; "{CL}" is replaced with the real
 * body length where the test is not about Content-Length itself.
 */

/** Joins header lines with CRLF, ends the header section and appends the body. */
export function sip(lines: string[], body: string | Buffer = ''): Buffer {
  const bodyBuf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const head = `${lines.join('\r\n')}\r\n\r\n`.replace('{CL}', String(bodyBuf.length));
  return Buffer.concat([Buffer.from(head, 'utf8'), bodyBuf]);
}

const SDP = [
  'v=0',
  'o=mhandley 29739 7272939 IN IP4 192.0.2.3',
  's=-',
  'c=IN IP4 192.0.2.4',
  't=0 0',
  'm=audio 49217 RTP/AVP 0 12',
  'm=video 3227 RTP/AVP 31',
  'a=rtpmap:31 LPC',
  '',
].join('\r\n');

export const valid = {
  /** 3.1.1.1 A short tortuous INVITE: LWS everywhere, folding, odd case, compact forms. */
  wsinv: sip(
    [
      'INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0',
      'TO :',
      ' sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n',
      'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>',
      '  ;',
      '  tag = 98asjd8',
      'MaX-fOrWaRdS: 0068',
      'Call-ID: wsinv.ndaksdj@192.0.2.1',
      'Content-Length   : {CL}',
      'cseq: 0009',
      '  INVITE',
      'Via  : SIP  /   2.0',
      ' /UDP',
      '    192.0.2.2;branch=390skdjuw',
      's :',
      'NewFangledHeader:   newfangled value',
      ' continued newfangled value',
      'UnknownHeaderWithUnusualValue: ;;,,;;,;',
      'Content-Type: application/sdp',
      'Route:',
      ' <sip:services.example.com;lr;unknownwith=value;unknown-no-value>',
      'v:  SIP  / 2.0  / TCP     spindle.example.com   ;',
      '  branch  =   z9hG4bK9ikj8  ,',
      ' SIP  /    2.0   / UDP  192.168.255.111   ; branch=',
      ' z9hG4bK30239',
      'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =',
      '      newvalue ;',
      '  secondparam ; q = 0.33',
    ],
    SDP,
  ),

  /** 3.1.1.2 Wide range of valid characters: odd method, URI, tokens, escaped NUL in a quoted string. */
  intmeth: sip([
    "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0",
    "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
    'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@example.com>',
    "From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"праведный\";tag=_token~1'+`*%!-.",
    'Call-ID: intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{',
    "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
    'Max-Forwards: 255',
    "extensionHeader-!.%*+_`'~: 大停電",
    'Content-Length: 0',
  ]),

  /** 3.1.1.3 Valid use of the % escaping mechanism. */
  esc01: sip(
    [
      'INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0',
      'To: sip:%75se%72@example.com',
      'From: <sip:I%20have%20spaces@example.net>;tag=938',
      'Max-Forwards: 87',
      'i: esc01.239409asdfakjkn23onasd0-3234',
      'CSeq: 234234 INVITE',
      'Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw',
      'C: application/sdp',
      'Contact:',
      '  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>',
      'Content-Length: {CL}',
    ],
    SDP,
  ),

  /** 3.1.1.4 Escaped NULs in URIs. */
  escnull: sip([
    'REGISTER sip:example.com SIP/2.0',
    'To: sip:null-%00-null@example.com',
    'From: sip:null-%00-null@example.com;tag=839923423',
    'Max-Forwards: 70',
    'Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd',
    'CSeq: 14398234 REGISTER',
    'Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw',
    'Contact: <sip:%00@host5.example.com>',
    'Contact: <sip:%00%00@host5.example.com>',
    'L:0',
  ]),

  /** 3.1.1.5 Use of % when it is not an escape: in a method, display name, header name. */
  esc02: sip([
    'RE%47IST%45R sip:registrar.example.com SIP/2.0',
    'To: "%Z%45" <sip:resource@example.com>',
    'From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23',
    'Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf',
    'Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209%fzsnel234',
    'CSeq: 29344 RE%47IST%45R',
    'Max-Forwards: 70',
    'Contact: <sip:alias1@host1.example.com>',
    'C%6Fntact: <sip:alias2@host2.example.com>',
    'Contact: <sip:alias3@host3.example.com>',
    'l: 0',
  ]),

  /** 3.1.1.6 No LWS between display name and "<". */
  lwsdisp: sip([
    'OPTIONS sip:user@example.com SIP/2.0',
    'To: sip:user@example.com',
    'From: caller<sip:caller@example.com>;tag=323',
    'Max-Forwards: 70',
    'Call-ID: lwsdisp.1234abcd@funky.example.com',
    'CSeq: 60 OPTIONS',
    'Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw',
    'l: 0',
  ]),

  /** 3.1.1.7 Long values in header fields: long tag, display name, many Vias, long unknown header. */
  longreq: sip(
    [
      'INVITE sip:user@example.com SIP/2.0',
      `To: "I have a user name of ${'extreme'.repeat(40)} proportion"<sip:user@example.com:6000;unknownparam1=very${'long'.repeat(50)}value;longparam${'name'.repeat(30)}=shortvalue;very${'long'.repeat(40)}ParameterNameWithNoValue>`,
      `F: sip:${'amazinglylongcallername'.repeat(10)}@example.net;tag=12${'982'.repeat(120)}424;unknownheaderparam${'name'.repeat(30)}=unknowheader${'value'.repeat(30)};unknownValueless${'param'.repeat(30)}`,
      `Call-ID: longreq.one${'really'.repeat(80)}longcallid`,
      'CSeq: 3882340 INVITE',
      `Unknown-${'Long'.repeat(50)}-Name: unknown-${'long'.repeat(50)}-value; unknown-${'long'.repeat(30)}-parameter-name = unknown-${'long'.repeat(30)}-parameter-value`,
      ...Array.from(
        { length: 10 },
        (_, i) => `Via: SIP/2.0/TCP sip${i}.example.com:5060;branch=z9hG4bKlongvia${i}`,
      ),
      `Via: ${Array.from({ length: 30 }, (_, i) => `SIP/2.0/UDP sip${i + 10}.example.com;branch=z9hG4bKjoined${i}`).join(',')}`,
      `Contact: <sip:${'amazinglylongcallername'.repeat(10)}@host5.example.net>`,
      'Content-Type: application/sdp',
      `l: {CL}`,
      'Max-Forwards: 70',
    ],
    SDP,
  ),

  /** 3.1.1.8 Extra trailing octets in a UDP datagram: a second request after Content-Length 0. */
  dblreq: sip([
    'REGISTER sip:example.com SIP/2.0',
    'To: sip:j.user@example.com',
    'From: sip:j.user@example.com;tag=43251j3j324',
    'Max-Forwards: 8',
    'I: dblreq.0ha0isndaksdj99sdfafnl3lk233412',
    'Contact: sip:j.user@host.example.com',
    'CSeq: 8 REGISTER',
    'Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492',
    'Content-Length: 0',
    '',
    'INVITE sip:joe@example.com SIP/2.0',
    't: sip:joe@example.com',
    'From: sip:caller@example.net;tag=141334',
    'Max-Forwards: 8',
    'Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15',
    'CSeq: 8 INVITE',
    'Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234',
    'Content-Length: 0',
  ]),

  /** 3.1.1.9 Semicolon-separated parameters in the user part of a URI. */
  semiuri: sip([
    'OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0',
    'To: sip:j_user@example.com',
    'From: sip:caller@example.org;tag=33242',
    'Max-Forwards: 3',
    'Call-ID: semiuri.0ha0isndaksdj',
    'CSeq: 8 OPTIONS',
    'Accept: application/sdp, application/pkcs7-mime,',
    '        multipart/mixed, multipart/signed,',
    '        message/sip, message/sipfrag',
    'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw',
    'l: 0',
  ]),

  /** 3.1.1.10 Varied and unknown transport types. */
  transports: sip([
    'OPTIONS sip:user@example.com SIP/2.0',
    'To: sip:user@example.com',
    'From: <sip:caller@example.com>;tag=323',
    'Max-Forwards: 70',
    'Call-ID:  transports.kijh4akdnaqjkwendsasfdj',
    'Accept: application/sdp',
    'CSeq: 60 OPTIONS',
    'Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw',
    'Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf',
    'Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj',
    'Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en',
    'Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee',
    'l: 0',
  ]),

  /** 3.1.1.11 Multipart MIME message with a binary part (NULs, CRLFCRLF inside the body). */
  mpart01: sip(
    [
      'MESSAGE sip:kumiko@example.org SIP/2.0',
      'Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport',
      'Max-Forwards: 70',
      'Route: <sip:127.0.0.1:5080>',
      'Identity-Info: <https://example.com/cert>;alg=rsa-sha1',
      'Contact: <sip:fluffy@127.0.0.1:5070>',
      'To: <sip:kumiko@example.org>',
      'From: <sip:fluffy@example.com>;tag=2fb0dcc9',
      'Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..',
      'CSeq: 1 MESSAGE',
      'Accept: text/plain, application/sdp, multipart/mixed',
      'Content-Type: multipart/mixed;boundary=7a9cbec02ceef655',
      'MIME-Version: 1.0',
      'User-Agent: SIPimp.org/0.2.5 (curses)',
      'Content-Length: {CL}',
    ],
    Buffer.concat([
      Buffer.from(
        '--7a9cbec02ceef655\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nHello\r\n' +
          '--7a9cbec02ceef655\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n',
      ),
      Buffer.from([0x30, 0x82, 0x00, 0x00, 0x0d, 0x0a, 0x0d, 0x0a, 0xff, 0xfe, 0x00, 0x01]),
      Buffer.from('\r\n--7a9cbec02ceef655--\r\n'),
    ]),
  ),

  /** 3.1.1.12 Unusual reason phrase: UTF-8 and odd characters. */
  unreason: sip(
    [
      'SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое',
      'Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923',
      'Call-ID: unreason.1234ksdfak3j2erwedfsASdf',
      'CSeq: 35 INVITE',
      'From: sip:user@example.com;tag=11141343',
      'To: sip:user@example.edu;tag=2229',
      'Content-Length: {CL}',
      'Content-Type: application/sdp',
      'Contact: <sip:user@host198.example.com>',
    ],
    SDP,
  ),

  /** 3.1.1.13 Empty reason phrase (the SP after the code is still there). */
  noreason: sip([
    'SIP/2.0 100 ',
    'Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe',
    'Call-ID: noreason.asndj203insdf99223ndf',
    'CSeq: 35 INVITE',
    'From: <sip:user@example.com>;tag=39ansfi3',
    'To: <sip:user@example.edu>;tag=902jndnke3',
    'Content-Length: 0',
    'Contact: <sip:user@host105.example.com>',
  ]),

  /** Unknown extensions in Require and Proxy-Require: syntactically fine, answered 420 by logic. */
  bext01: sip([
    'OPTIONS sip:user@example.com SIP/2.0',
    'To: sip:j_user@example.com',
    'From: sip:caller@example.net;tag=242etr',
    'Max-Forwards: 6',
    'Call-ID: bext01.0ha0isndaksdj',
    'Require: nothingSupportsThis, nothingSupportsThisEither',
    'Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis',
    'CSeq: 8 OPTIONS',
    'Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw',
    'Content-Length: 0',
  ]),

  /** A 200 whose second Via names the broadcast address: parsed, the transport must not send there. */
  bcast: sip([
    'SIP/2.0 200 OK',
    'Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923',
    'Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23',
    'Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf',
    'CSeq: 35 INVITE',
    'From: sip:user@example.com;tag=11141343',
    'To: sip:user@example.edu;tag=2229',
    'Content-Length: 0',
    'Contact: <sip:user@host28.example.com>',
  ]),

  /** A branch that is only the magic cookie: valid syntax, but not an RFC 3261 transaction id. */
  badbranch: sip([
    'OPTIONS sip:user@example.com SIP/2.0',
    'To: sip:user@example.com',
    'From: sip:caller@example.org;tag=33242',
    'Max-Forwards: 3',
    'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK',
    'Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n',
    'CSeq: 8 OPTIONS',
    'l: 0',
  ]),

  /** Unknown URI schemes in From, To and Contact are legal there. */
  unksm2: sip([
    'REGISTER sip:example.com SIP/2.0',
    'To: isbn:2983792873',
    'From: <http://www.example.com>;tag=3234233',
    'Call-ID: unksm2.daksdj@hyphenated-host.example.com',
    'CSeq: 234902 REGISTER',
    'Max-Forwards: 70',
    'Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw',
    'Contact: <name:John_Smith>',
    'l: 0',
  ]),

  /** Escaped headers inside a bracketed Contact URI are fine (they are not in the request-URI). */
  regescrt: sip([
    'REGISTER sip:example.com SIP/2.0',
    'To: sip:user@example.com',
    'From: sip:user@example.com;tag=8',
    'Max-Forwards: 70',
    'Call-ID: regescrt.k345asrl3fdbv@192.0.2.1',
    'CSeq: 14398234 REGISTER',
    'Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw',
    'M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>',
    'L:0',
  ]),

  /** Contact parameters, known and unknown, on a REGISTER. */
  cparam01: sip([
    'REGISTER sip:example.com SIP/2.0',
    'Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw',
    'Max-Forwards: 70',
    'From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe',
    'To: sip:watson@example.com',
    'Call-ID: cparam01.70710@saturn.example.com',
    'CSeq: 2 REGISTER',
    'Contact: sip:+19725552222@gw1.example.net;unknownparam',
    'l: 0',
  ]),

  /** sips request-URI. */
  sipssch: sip([
    'OPTIONS sips:user@example.com SIP/2.0',
    'To: sips:user@example.com',
    'From: <sips:caller@example.com>;tag=8392034',
    'Max-Forwards: 70',
    'Call-ID: sipssch.a84b4c76e66710',
    'CSeq: 63104 OPTIONS',
    'Via: SIP/2.0/TLS host5.example.com;branch=z9hG4bKkdjuw',
    'l: 0',
  ]),

  /** An RFC 2543 style INVITE: no magic cookie in the branch, no branch at all is fine too. */
  inv2543: sip([
    'INVITE sip:UserB@example.com SIP/2.0',
    'Via: SIP/2.0/UDP iftgw.example.com',
    'From: <sip:+13035551111@ift.client.example.net;user=phone>',
    'Record-Route: <sip:github.example.com;lr>',
    'To: sip:+16505552222@ss1.example.net;user=phone',
    'Call-ID: inv2543.1717@ift.client.example.com',
    'CSeq: 56 INVITE',
    'Content-Type: application/sdp',
    'l: 0',
  ]),

  /** Max-Forwards of zero: valid syntax (a proxy answers 483 to it, a UAS may still answer OPTIONS). */
  zeromf: sip([
    'OPTIONS sip:user@example.com SIP/2.0',
    'To: sip:user@example.com',
    'From: sip:caller@example.net;tag=3ghsd41',
    'Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas',
    'CSeq: 39234321 OPTIONS',
    'Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i',
    'Max-Forwards: 0',
    'l: 0',
  ]),
};

const REQUEST_TAIL = [
  'Max-Forwards: 70',
  'Call-ID: invalid.0ha0isndaksdj',
  'CSeq: 8 OPTIONS',
  'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw',
];

/** Invalid messages with the status the RFC (or RFC 4475's discussion) wants. */
export const invalid: Record<
  string,
  { message: Buffer; status: number; reason?: RegExp; answerable: boolean }
> = {
  badinv01: {
    message: sip(
      [
        'INVITE sip:user@example.com SIP/2.0',
        'To: sip:j.user@example.com',
        'From: sip:caller@example.net;tag=134161461246',
        'Max-Forwards: 7',
        'Call-ID: badinv01.0ha0isndaksdjasdf3234nas',
        'CSeq: 8 INVITE',
        'Via: SIP/2.0/UDP 192.0.2.15;;,;,,',
        'Contact: "Joe" <sip:joe@example.org>;;;;',
        'Content-Length: {CL}',
        'Content-Type: application/sdp',
      ],
      SDP,
    ),
    status: 400,
    reason: /Via/,
    answerable: true,
  },
  clerr: {
    message: sip(
      [
        'INVITE sip:user@example.com SIP/2.0',
        'Max-Forwards: 80',
        'To: sip:j.user@example.com',
        'From: sip:caller@example.net;tag=93942939o2',
        'Contact: <sip:caller@hungry.example.net>',
        'Call-ID: clerr.0ha0isndaksdjweiafasdk3',
        'CSeq: 8 INVITE',
        'Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523',
        'Content-Type: application/sdp',
        'Content-Length: 9999',
      ],
      SDP,
    ),
    status: 400,
    reason: /Content-Length/,
    answerable: true,
  },
  ncl: {
    message: sip(
      [
        'INVITE sip:user@example.com SIP/2.0',
        'Max-Forwards: 254',
        'To: sip:j.user@example.com',
        'From: sip:caller@example.net;tag=32394234',
        'Call-ID: ncl.0ha0isndaksdj2193423r542w35',
        'CSeq: 0 INVITE',
        'Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw',
        'Content-Type: application/sdp',
        'Content-Length: -999',
      ],
      SDP,
    ),
    status: 400,
    reason: /Content-Length/,
    answerable: true,
  },
  scalar02: {
    message: sip([
      'REGISTER sip:example.com SIP/2.0',
      'Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3',
      'To: <sip:user@example.com>',
      'From: <sip:user@example.com>;tag=239232jh3',
      'CSeq: 36893488147419103232 REGISTER',
      'Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32',
      'Max-Forwards: 300',
      'Expires: 1000000000000000000000000',
      'Contact: <sip:user@host129.example.com>;expires=280297596632815',
      'Content-Length: 0',
    ]),
    status: 400,
    reason: /CSeq/,
    answerable: true,
  },
  quotbal: {
    message: sip([
      'INVITE sip:user@example.com SIP/2.0',
      'To: "Mr. J. User <sip:j.user@example.com>',
      'From: sip:caller@example.net;tag=93334',
      'Max-Forwards: 10',
      'Call-ID: quotbal.aksdj',
      'Contact: <sip:caller@host59.example.net>',
      'CSeq: 8 INVITE',
      'Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234',
      'Content-Length: 0',
    ]),
    status: 400,
    reason: /To/,
    answerable: true,
  },
  ltgtruri: {
    message: sip([
      'INVITE <sip:user@example.com> SIP/2.0',
      'To: sip:user@example.com',
      'From: sip:caller@example.net;tag=39291',
      'Max-Forwards: 23',
      'Call-ID: ltgtruri.1@192.0.2.5',
      'CSeq: 1 INVITE',
      'Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKkdjuw',
      'Content-Length: 0',
    ]),
    status: 400,
    reason: /Request-URI/,
    answerable: true,
  },
  lwsruri: {
    message: sip([
      'INVITE sip:user@example.com; lr SIP/2.0',
      'To: sip:user@example.com;tag=3xfe-9921883-z9f',
      'From: sip:caller@example.net;tag=231413434',
      'Max-Forwards: 5',
      'Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423',
      'CSeq: 2130706432 INVITE',
      'Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395',
      'Content-Length: 0',
    ]),
    status: 400,
    answerable: true,
  },
  lwsstart: {
    message: sip([
      'INVITE  sip:user@example.com  SIP/2.0',
      'Max-Forwards: 8',
      'To: sip:user@example.com',
      'From: sip:caller@example.net;tag=8814',
      'Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com',
      'CSeq: 1893884 INVITE',
      'Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923',
      'Content-Length: 0',
    ]),
    status: 400,
    answerable: true,
  },
  trws: {
    message: sip([
      'OPTIONS sip:remote-target@example.com SIP/2.0  ',
      'Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK299342093',
      'To: <sip:remote-target@example.com>',
      'From: <sip:local-resource@example.com>;tag=329429089',
      'Call-ID: trws.oicu34958239neffasdhr2345r',
      'Accept: application/sdp',
      'CSeq: 238923 OPTIONS',
      'Max-Forwards: 70',
      'Content-Length: 0',
    ]),
    status: 400,
    answerable: true,
  },
  escruri: {
    message: sip([
      'INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0',
      'To: sip:user@example.com',
      'From: sip:caller@example.net;tag=341518',
      'Max-Forwards: 7',
      'Contact: <sip:caller@host39923.example.net>',
      'Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5',
      'CSeq: 149209342 INVITE',
      'Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw',
      'Content-Length: 0',
    ]),
    status: 400,
    reason: /Request-URI/,
    answerable: true,
  },
  baddate: {
    message: sip([
      'INVITE sip:user@example.com SIP/2.0',
      'To: sip:user@example.com',
      'From: sip:caller@example.net;tag=2234923',
      'Max-Forwards: 70',
      'Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234',
      'CSeq: 1392934 INVITE',
      'Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw',
      'Date: Fri, 01 Jan 2010 16:00:00 EST',
      'Contact: <sip:caller@host5.example.net>',
      'Content-Length: 0',
    ]),
    status: 400,
    reason: /Date/,
    answerable: true,
  },
  regbadct: {
    message: sip([
      'REGISTER sip:example.com SIP/2.0',
      'To: sip:user@example.com',
      'From: sip:user@example.com;tag=998332',
      'Max-Forwards: 70',
      'Call-ID: regbadct.k345asrl3fdbv@10.0.0.1',
      'CSeq: 1 REGISTER',
      'Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw',
      'Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E',
      'l: 0',
    ]),
    status: 400,
    reason: /Contact/,
    answerable: true,
  },
  badaspec: {
    message: sip([
      'OPTIONS sip:user@example.org SIP/2.0',
      'Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234',
      'Max-Forwards: 70',
      'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423',
      'To: "Watson, Thomas" < sip:t.watson@example.org >',
      'Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3',
      'Accept: application/sdp',
      'CSeq: 3923239 OPTIONS',
      'l: 0',
    ]),
    status: 400,
    reason: /To/,
    answerable: true,
  },
  baddn: {
    message: sip([
      'OPTIONS sip:t.watson@example.org SIP/2.0',
      'Via: SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw',
      'Max-Forwards: 70',
      'From: Bell, Alexander <sip:a.g.bell@example.com>;tag=43',
      'To: Watson, Thomas <sip:t.watson@example.org>',
      'Call-ID: baddn.31415@c.example.com',
      'Accept: application/sdp',
      'CSeq: 3923239 OPTIONS',
      'l: 0',
    ]),
    status: 400,
    reason: /From/,
    answerable: true,
  },
  badvers: {
    message: sip([
      'OPTIONS sip:t.watson@example.org SIP/7.0',
      'Via: SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw',
      'Max-Forwards: 70',
      'From: A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe',
      'To: T. Watson <sip:t.watson@example.org>',
      'Call-ID: badvers.31417@c.example.com',
      'CSeq: 1 OPTIONS',
      'l: 0',
    ]),
    status: 505,
    answerable: true,
  },
  mismatch01: {
    message: sip([
      'OPTIONS sip:user@example.com SIP/2.0',
      'To: sip:j.user@example.com',
      'From: sip:caller@example.net;tag=34525',
      'Max-Forwards: 6',
      'Call-ID: mismatch01.dj0234sxdfl3',
      'CSeq: 8 INVITE',
      'Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw',
      'l: 0',
    ]),
    status: 400,
    reason: /CSeq/,
    answerable: true,
  },
  mismatch02: {
    message: sip(
      [
        'NEWMETHOD sip:user@example.com SIP/2.0',
        'To: sip:j.user@example.com',
        'From: sip:caller@example.net;tag=34525',
        'Max-Forwards: 6',
        'Call-ID: mismatch02.dj0234sxdfl3',
        'CSeq: 8 INVITE',
        'Contact: <sip:caller@host.example.net>',
        'Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw',
        'Content-Type: application/sdp',
        'l: {CL}',
      ],
      SDP,
    ),
    status: 400,
    reason: /CSeq/,
    answerable: true,
  },
  bigcode: {
    message: sip([
      'SIP/2.0 4294967301 better not break the receiver',
      'Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe',
      'Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i',
      'CSeq: 353494 INVITE',
      'From: <sip:user@example.com>;tag=39ansfi3',
      'To: <sip:user@example.edu>;tag=902jndnke3',
      'Content-Length: 0',
      'Contact: <sip:user@host105.example.com>',
    ]),
    status: 400,
    answerable: false,
  },
  multi01: {
    message: sip([
      'INVITE sip:user@company.com SIP/2.0',
      'Contact: <sip:caller@host25.example.net>',
      'Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw',
      'Max-Forwards: 70',
      'CSeq: 5 INVITE',
      'Call-ID: multi01.98asdh@192.0.2.1',
      'CSeq: 59 INVITE',
      'Call-ID: multi01.98asdh@192.0.2.2',
      'From: sip:caller@example.com;tag=3413415',
      'To: sip:user@example.com',
      'To: sip:other@example.net',
      'From: sip:caller@example.net;tag=2923420123',
      'l: 0',
    ]),
    status: 400,
    reason: /Multiple/,
    answerable: true,
  },
  mcl01: {
    message: sip(
      [
        'OPTIONS sip:user@example.com SIP/2.0',
        'Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423',
        'To: sip:user@example.com',
        'From: sip:other@example.net;tag=3923942',
        'Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf',
        'CSeq: 15932 OPTIONS',
        'Content-Length: 13',
        'Max-Forwards: 60',
        'Content-Length: 5',
        'Content-Type: text/plain',
      ],
      "There's no way to know how many octets are supposed to be here.",
    ),
    status: 400,
    reason: /Content-Length/,
    answerable: true,
  },
  unkscm: {
    message: sip([
      'OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0',
      'To: sip:user@example.com',
      'From: sip:c@example.net;tag=1',
      ...REQUEST_TAIL,
      'l: 0',
    ]),
    status: 416,
    answerable: true,
  },
  novelsc: {
    message: sip([
      'OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0',
      'To: sip:user@example.com',
      'From: sip:c@example.net;tag=1',
      ...REQUEST_TAIL,
      'l: 0',
    ]),
    status: 416,
    answerable: true,
  },
  sip3: {
    message: sip([
      'OPTIONS sip:user@example.com SIP/3.0',
      'To: sip:user@example.com',
      'From: sip:c@example.net;tag=1',
      ...REQUEST_TAIL,
      'l: 0',
    ]),
    status: 505,
    answerable: true,
  },
  mailto: {
    message: sip([
      'OPTIONS mailto:user@example.com SIP/2.0',
      'To: sip:user@example.com',
      'From: sip:c@example.net;tag=1',
      ...REQUEST_TAIL,
      'l: 0',
    ]),
    status: 416,
    answerable: true,
  },
  http: {
    message: sip([
      'OPTIONS http://example.com/ SIP/2.0',
      'To: sip:user@example.com',
      'From: sip:c@example.net;tag=1',
      ...REQUEST_TAIL,
      'l: 0',
    ]),
    status: 416,
    answerable: true,
  },
};
