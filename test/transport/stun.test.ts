import { describe, expect, it } from 'vitest';
import { isStunBindingRequest, stunBindingSuccess } from '../../src/transport/stun.js';

function bindingRequest(): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(0x0001, 0);
  b.writeUInt32BE(0x2112a442, 4);
  Buffer.from('0123456789ab').copy(b, 8);
  return b;
}

describe('STUN keep-alives (RFC 5389, RFC 5626 4.4.2)', () => {
  it('recognises a Binding request and nothing that could be SIP', () => {
    expect(isStunBindingRequest(bindingRequest())).toBe(true);
    expect(isStunBindingRequest(Buffer.from('OPTIONS sip:x SIP/2.0\r\n\r\n'))).toBe(false);
    expect(isStunBindingRequest(Buffer.from('\r\n\r\n'))).toBe(false);
    const wrongLength = bindingRequest();
    wrongLength.writeUInt16BE(8, 2);
    expect(isStunBindingRequest(wrongLength)).toBe(false);
  });

  it('answers with the transaction id and the XOR-mapped source address', () => {
    const req = bindingRequest();
    const res = stunBindingSuccess(req, '192.0.2.1', 32853);
    expect(res.readUInt16BE(0)).toBe(0x0101);
    expect(res.readUInt16BE(2)).toBe(12);
    expect(res.subarray(4, 20)).toEqual(req.subarray(4, 20));
    expect(res.readUInt16BE(20)).toBe(0x0020);
    expect(res[25]).toBe(0x01);
    expect(res.readUInt16BE(26) ^ 0x2112).toBe(32853);
    const address = [...res.subarray(28, 32)].map((b, i) => b ^ [0x21, 0x12, 0xa4, 0x42][i]);
    expect(address).toEqual([192, 0, 2, 1]);
  });

  it('maps an IPv6 source with the transaction id in the mask', () => {
    const req = bindingRequest();
    const res = stunBindingSuccess(req, '2001:db8::1', 5060);
    expect(res[25]).toBe(0x02);
    const mask = req.subarray(4, 20);
    const address = [...res.subarray(28, 44)].map((b, i) => b ^ mask[i]);
    expect(address.slice(0, 4)).toEqual([0x20, 0x01, 0x0d, 0xb8]);
    expect(address[15]).toBe(1);
  });
});
