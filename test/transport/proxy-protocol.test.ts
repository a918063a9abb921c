import { describe, expect, it } from 'vitest';
import { PROXY_V2_SIGNATURE, parseProxyHeader } from '../../src/transport/proxy-protocol.js';

function v2(command: number, familyProtocol: number, address: Buffer): Buffer {
  const head = Buffer.alloc(16);
  PROXY_V2_SIGNATURE.copy(head);
  head[12] = 0x20 | command;
  head[13] = familyProtocol;
  head.writeUInt16BE(address.length, 14);
  return Buffer.concat([head, address]);
}

describe('parseProxyHeader', () => {
  it('reads a version 1 line and says where the SIP data starts', () => {
    const line = 'PROXY TCP4 198.51.100.7 192.0.2.1 40001 5060\r\n';
    const result = parseProxyHeader(Buffer.from(`${line}OPTIONS sip:x SIP/2.0\r\n`));
    expect(result).toEqual({
      kind: 'header',
      length: line.length,
      source: { address: '198.51.100.7', port: 40001 },
    });
    expect(parseProxyHeader(Buffer.from('PROXY TCP6 2001:DB8::7 2001:db8::1 40001 5060\r\n'))).toMatchObject({
      source: { address: '2001:db8::7', port: 40001 },
    });
    expect(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).toEqual({ kind: 'header', length: 15 });
  });

  it('waits for the rest of a header split across segments', () => {
    expect(parseProxyHeader(Buffer.from('PRO'))).toEqual({ kind: 'incomplete' });
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 198.51.100.7'))).toEqual({ kind: 'incomplete' });
    expect(parseProxyHeader(PROXY_V2_SIGNATURE.subarray(0, 5))).toEqual({ kind: 'incomplete' });
    const full = v2(1, 0x11, Buffer.alloc(12));
    expect(parseProxyHeader(full.subarray(0, 20))).toEqual({ kind: 'incomplete' });
  });

  it('does not mistake SIP or a keep-alive for a header', () => {
    expect(parseProxyHeader(Buffer.from('OPTIONS sip:x SIP/2.0\r\n'))).toEqual({ kind: 'none' });
    expect(parseProxyHeader(Buffer.from('\r\n\r\nOPTIONS'))).toEqual({ kind: 'none' });
  });

  it('refuses malformed version 1 lines', () => {
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n')).kind).toBe('invalid');
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 1.2.3.4 1.2.3.4 99999 2\r\n')).kind).toBe('invalid');
    expect(parseProxyHeader(Buffer.from(`PROXY ${'x'.repeat(120)}`)).kind).toBe('invalid');
  });

  it('reads version 2 addresses (IPv4, IPv6) and skips TLVs', () => {
    const v4 = Buffer.from([198, 51, 100, 7, 192, 0, 2, 1, 0x9c, 0x41, 0x13, 0xc4, 0x04, 0x00, 0x01, 0x00]);
    expect(parseProxyHeader(v2(1, 0x11, v4))).toEqual({
      kind: 'header',
      length: 32,
      source: { address: '198.51.100.7', port: 40001 },
    });
    const v6 = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000007', 'hex').copy(v6, 0);
    v6.writeUInt16BE(40002, 32);
    expect(parseProxyHeader(v2(1, 0x21, v6))).toMatchObject({
      source: { address: '2001:db8::7', port: 40002 },
    });
  });

  it('keeps the socket address for LOCAL (health checks) and non-stream protocols', () => {
    expect(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0)))).toEqual({ kind: 'header', length: 16 });
    expect(parseProxyHeader(v2(1, 0x12, Buffer.alloc(12)))).toEqual({ kind: 'header', length: 28 });
  });

  it('refuses other versions and commands', () => {
    const bad = v2(1, 0x11, Buffer.alloc(12));
    bad[12] = 0x31;
    expect(parseProxyHeader(bad).kind).toBe('invalid');
    expect(parseProxyHeader(v2(5, 0x11, Buffer.alloc(12))).kind).toBe('invalid');
  });
});
