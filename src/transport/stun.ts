import { isIP } from 'node:net';

/** RFC 5389 6: the magic cookie in bytes 4-7 of every STUN message. */
const MAGIC_COOKIE = 0x2112a442;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const XOR_MAPPED_ADDRESS = 0x0020;

/**
 * Is this datagram a STUN Binding request (RFC 5389 6)? RFC 5626 4.4.2 has UDP clients
 * keep their NAT binding open and learn their public address with these, sent to the SIP
 * port itself: the first two bits are zero (a SIP message starts with a letter), the cookie
 * is in place and the length fits the datagram.
 */
export function isStunBindingRequest(data: Buffer): boolean {
  return (
    data.length >= 20 &&
    (data[0] & 0xc0) === 0 &&
    data.readUInt16BE(0) === BINDING_REQUEST &&
    data.readUInt32BE(4) === MAGIC_COOKIE &&
    data.readUInt16BE(2) + 20 === data.length
  );
}

/**
 * The Binding success response (RFC 5389 7.3.1) to a request: its transaction id and the
 * address it came from as XOR-MAPPED-ADDRESS (RFC 5389 15.2), which is what the client
 * compares to notice its NAT binding changed (RFC 5626 4.4.2).
 */
export function stunBindingSuccess(request: Buffer, address: string, port: number): Buffer {
  const family = isIP(address) === 6 ? 6 : 4;
  const addressBytes = family === 4 ? ipv4Bytes(address) : ipv6Bytes(address);
  const value = Buffer.alloc(4 + addressBytes.length);
  value[1] = family === 4 ? 0x01 : 0x02;
  value.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2);
  // The address is XORed with the cookie, and for IPv6 with the transaction id after it.
  const mask = request.subarray(4, 20);
  for (let i = 0; i < addressBytes.length; i++) value[4 + i] = addressBytes[i] ^ mask[i];
  const out = Buffer.alloc(20 + 4 + value.length);
  out.writeUInt16BE(BINDING_SUCCESS, 0);
  out.writeUInt16BE(4 + value.length, 2);
  request.copy(out, 4, 4, 20);
  out.writeUInt16BE(XOR_MAPPED_ADDRESS, 20);
  out.writeUInt16BE(value.length, 22);
  value.copy(out, 24);
  return out;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map((n) => Number(n)));
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail = ''] = address.split('::');
  const parts = (s: string) => (s ? s.split(':') : []);
  const h = parts(head);
  const t = parts(tail);
  const groups = [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  for (let i = 0; i < 8; i++) out.writeUInt16BE(Number.parseInt(groups[i], 16) || 0, i * 2);
  return out;
}
