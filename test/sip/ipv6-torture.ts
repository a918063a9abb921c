/**
 * Messages equivalent to the RFC 5118 "SIP Torture Test Messages for IPv6", named after the
 * RFC's tags and rebuilt here (CRLF line ends, real Content-Lengths) to exercise the same
 * tricks. All are valid except ipv6-bad (4.2).
 */
import { sip } from './torture.js';

const SDP_IP6 = [
  'v=0',
  'o=assistant 971731711378798081 0 IN IP6 2001:db8::20',
  's=Live video feed',
  'c=IN IP6 2001:db8::20',
  't=0 0',
  'm=audio 6000 RTP/AVP 0',
  'a=rtpmap:0 PCMU/8000',
  '',
].join('\r\n');

const SDP_MIXED = [
  'v=0',
  'o=bob 280744730 28977631 IN IP4 host.example.com',
  's=',
  't=0 0',
  'm=audio 22334 RTP/AVP 0',
  'c=IN IP4 192.0.2.1',
  'm=video 6024 RTP/AVP 107',
  'c=IN IP6 2001:db8::1',
  'a=rtpmap:107 H263-1998/90000',
  '',
].join('\r\n');

const SDP_MAPPED = [
  'v=0',
  'o=- 1100 1 IN IP6 ::ffff:192.0.2.2',
  's=-',
  'c=IN IP6 ::ffff:192.0.2.2',
  't=0 0',
  'm=audio 6000 RTP/AVP 2',
  '',
].join('\r\n');

/** The headers every REGISTER of 4.1-4.4 shares, after its request line. */
function register(requestLine: string): Buffer {
  return sip([
    requestLine,
    'To: sip:user@example.com',
    'From: sip:user@example.com;tag=81x2',
    'Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111',
    'Call-ID: SSG9559905523997077@hlau_4100',
    'Max-Forwards: 70',
    'Contact: "Caller" <sip:caller@[2001:db8::1]>',
    'CSeq: 98176 REGISTER',
    'Content-Length: 0',
  ]);
}

function options(uri: string, via: string): Buffer {
  return sip([
    `OPTIONS ${uri} SIP/2.0`,
    `To: ${uri}`,
    'From: sip:user@example.com;tag=810x2',
    `Via: ${via}`,
    'Call-ID: G9559905523997077@hlau_4100',
    'CSeq: 689 OPTIONS',
    'Max-Forwards: 70',
    'Content-Length: 0',
  ]);
}

export const ipv6 = {
  /** 4.1 An IPv6 reference in the Request-URI, Via and Contact. */
  'ipv6-good': register('REGISTER sip:[2001:db8::10] SIP/2.0'),
  /** 4.2 An IPv6 address without brackets in the Request-URI: 400. */
  'ipv6-bad': register('REGISTER sip:2001:db8::10 SIP/2.0'),
  /** 4.3 What looks like a port is inside the brackets: it is the address's last group. */
  'port-ambiguous': register('REGISTER sip:[2001:db8::10:5070] SIP/2.0'),
  /** 4.4 The port after the closing bracket. */
  'port-unambiguous': register('REGISTER sip:[2001:db8::10]:5070 SIP/2.0'),
  /** 4.5 received with the brackets of an IPv6reference (RFC 3261's grammar has none). */
  'via-received-param-with-delim': options(
    'sip:[2001:db8::10]',
    'SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111',
  ),
  /** 4.5 received as RFC 3261 writes it. */
  'via-received-param-no-delim': options(
    'sip:[2001:db8::10]',
    'SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3-111',
  ),
  /** 4.6 IPv6 addresses in the SDP body: SIP does not touch them. */
  'ipv6-in-sdp': sip(
    [
      'INVITE sip:user@[2001:db8::10] SIP/2.0',
      'To: sip:user@[2001:db8::10]',
      'From: sip:user@example.com;tag=81x2',
      'Via: SIP/2.0/UDP [2001:db8::20];branch=z9hG4bKas3-111',
      'Call-ID: SSG9559905523997077@hlau_4100',
      'Contact: "Caller" <sip:caller@[2001:db8::20]>',
      'CSeq: 8612 INVITE',
      'Max-Forwards: 70',
      'Content-Type: application/sdp',
      'Content-Length: {CL}',
    ],
    SDP_IP6,
  ),
  /** 4.7 IPv6 and IPv4 side by side in a Via list and a Contact list. */
  'mult-ip-in-header': sip([
    'BYE sip:user@host.example.net SIP/2.0',
    'Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111',
    'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144',
    'Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200',
    'Call-ID: 997077@lau_4100',
    'Max-Forwards: 70',
    'CSeq: 89187 BYE',
    'To: sip:user@example.net;tag=9817--94',
    'From: sip:user@example.com;tag=81x2',
    'Contact: <sip:user@[2001:db8::9:1]:6050>, <sip:user@192.0.2.1>',
    'Content-Length: 0',
  ]),
  /** 4.8 One stream on IPv4 and one on IPv6 in the SDP. */
  'mult-ip-in-sdp': sip(
    [
      'INVITE sip:user@[2001:db8::10] SIP/2.0',
      'To: sip:user@[2001:db8::10]',
      'From: sip:user@example.com;tag=81x2',
      'Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111',
      'Call-ID: SSG9559905523997077@hlau_4100',
      'Contact: "Caller" <sip:caller@[2001:db8::9:1]>',
      'Max-Forwards: 70',
      'CSeq: 8912 INVITE',
      'Content-Type: application/sdp',
      'Content-Length: {CL}',
    ],
    SDP_MIXED,
  ),
  /** 4.9 IPv4-mapped IPv6 addresses in Vias, Contact and SDP. */
  'ipv4-mapped-ipv6': sip(
    [
      'INVITE sip:user@example.com SIP/2.0',
      'To: sip:user@example.com',
      'From: sip:user@east.example.com;tag=81x2',
      'Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19',
      'Via: SIP/2.0/UDP [::ffff:192.0.2.2];branch=z9hG4bKas3-111',
      'Call-ID: SSG9559905523997077@hlau_4100',
      'Contact: "T. desk phone" <sip:ted@[::ffff:192.0.2.2]>',
      'CSeq: 612 INVITE',
      'Max-Forwards: 70',
      'Content-Type: application/sdp',
      'Content-Length: {CL}',
    ],
    SDP_MAPPED,
  ),
  /** 4.10 Three colons before the embedded IPv4 address: RFC 3261's ABNF bug, tolerated. */
  'ipv6-bug-abnf-3-colons': options(
    'sip:user@[2001:db8:::192.0.2.1]',
    'SIP/2.0/UDP [2001:db8:::192.0.2.1];branch=z9hG4bKas3-111',
  ),
  /** 4.10 The same address as RFC 4291 writes it. */
  'ipv6-correct-abnf-2-colons': options(
    'sip:user@[2001:db8::192.0.2.1]',
    'SIP/2.0/UDP [2001:db8::192.0.2.1];branch=z9hG4bKas3-111',
  ),
};

export type Ipv6Case = keyof typeof ipv6;
