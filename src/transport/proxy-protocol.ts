/**
 * The PROXY protocol (HAProxy, "The PROXY protocol" versions 1 and 2): a load balancer
 * prefixes each connection it opens to us with the client's address. Only believed from
 * trusted proxies (the caller decides); this module only reads the bytes.
 */

export type ProxyHeaderResult =
  /** More bytes are needed to tell. */
  | { kind: 'incomplete' }
  /** The connection does not start with a PROXY header. */
  | { kind: 'none' }
  /** A header of `length` bytes; `source` is absent for LOCAL/UNKNOWN (health checks). */
  | { kind: 'header'; length: number; source?: { address: string; port: number } }
  | { kind: 'invalid'; reason: string };

/** Spec 2.2: the 12-byte signature opening a version 2 header. */
export const PROXY_V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = Buffer.from('PROXY ');
/** Spec 2.1: a version 1 line is at most 107 bytes with its CRLF. */
const V1_MAX_LENGTH = 107;

/** True if `buf` begins (or, being shorter, could begin) a PROXY header of either version. */
export function startsLikeProxyHeader(buf: Buffer): boolean {
  return isPrefixOf(buf, V1_PREFIX) || isPrefixOf(buf, PROXY_V2_SIGNATURE);
}

export function parseProxyHeader(buf: Buffer): ProxyHeaderResult {
  if (isPrefixOf(buf, PROXY_V2_SIGNATURE)) {
    return buf.length < PROXY_V2_SIGNATURE.length ? { kind: 'incomplete' } : parseV2(buf);
  }
  if (isPrefixOf(buf, V1_PREFIX)) {
    return buf.length < V1_PREFIX.length ? { kind: 'incomplete' } : parseV1(buf);
  }
  return { kind: 'none' };
}

function parseV1(buf: Buffer): ProxyHeaderResult {
  const end = buf.indexOf('\r\n');
  if (end < 0) {
    return buf.length >= V1_MAX_LENGTH
      ? { kind: 'invalid', reason: 'PROXY v1 line too long' }
      : { kind: 'incomplete' };
  }
  if (end + 2 > V1_MAX_LENGTH) return { kind: 'invalid', reason: 'PROXY v1 line too long' };
  const parts = buf.toString('latin1', 0, end).split(' ');
  if (parts[1] === 'UNKNOWN') return { kind: 'header', length: end + 2 };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) {
    return { kind: 'invalid', reason: 'malformed PROXY v1 line' };
  }
  const [, family, address, , portText] = parts;
  const port = Number(portText);
  const okAddress = family === 'TCP4' ? IPV4_RE.test(address) : /^[0-9a-fA-F:.]+$/.test(address);
  if (!okAddress || !/^\d{1,5}$/.test(portText) || port > 65535) {
    return { kind: 'invalid', reason: 'malformed PROXY v1 address' };
  }
  return { kind: 'header', length: end + 2, source: { address: address.toLowerCase(), port } };
}

function parseV2(buf: Buffer): ProxyHeaderResult {
  if (buf.length < 16) return { kind: 'incomplete' };
  const versionCommand = buf[12];
  if (versionCommand >> 4 !== 2) return { kind: 'invalid', reason: 'unsupported PROXY version' };
  const length = 16 + buf.readUInt16BE(14);
  if (buf.length < length) return { kind: 'incomplete' };
  const command = versionCommand & 0x0f;
  // LOCAL: the proxy's own connection (health checks); keep the socket's address.
  if (command === 0) return { kind: 'header', length };
  if (command !== 1) return { kind: 'invalid', reason: 'unknown PROXY v2 command' };
  const familyProtocol = buf[13];
  const protocol = familyProtocol & 0x0f;
  const family = familyProtocol >> 4;
  // Only stream connections carry SIP here; anything else keeps the socket's address.
  if (protocol !== 1) return { kind: 'header', length };
  if (family === 1 && length >= 16 + 12) {
    const address = `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`;
    return { kind: 'header', length, source: { address, port: buf.readUInt16BE(24) } };
  }
  if (family === 2 && length >= 16 + 36) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + i * 2).toString(16));
    return { kind: 'header', length, source: { address: compressIpv6(groups), port: buf.readUInt16BE(48) } };
  }
  if (family === 0) return { kind: 'header', length };
  return { kind: 'invalid', reason: 'malformed PROXY v2 address block' };
}

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function isPrefixOf(buf: Buffer, full: Buffer): boolean {
  const n = Math.min(buf.length, full.length);
  return buf.compare(full, 0, n, 0, n) === 0;
}

/** RFC 5952 4.2.2: the longest run of two or more zero groups becomes "::". */
function compressIpv6(groups: string[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  const head = groups.slice(0, bestStart).join(':');
  const tail = groups.slice(bestStart + bestLength).join(':');
  return `${head}::${tail}`;
}
