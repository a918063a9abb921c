import { describe, expect, it } from 'vitest';
import { LocalIdentity } from '../../src/proxy/local.js';
import { parseUri } from '../../src/sip/uri.js';
import { stampReceived } from '../../src/transaction/layer.js';
import { FakeFlow, sipMessage } from '../support/flow-fake.js';

describe('a server listening on IPv6 (RFC 5118)', () => {
  const local = new LocalIdentity(
    'example.com',
    [{ transport: 'tcp', host: '::1', port: 5060 }],
    undefined,
    'v6',
  );
  const flow = new FakeFlow('f6', 'tcp', '::1', 40000, '::1', 5060);

  it('writes its own address as an IPv6 reference in Via, Record-Route and flow routes', () => {
    expect(local.via(flow, 'z9hG4bKx')).toBe('SIP/2.0/TCP [::1]:5060;branch=z9hG4bKx');
    expect(local.recordRoute(flow, 'sig')).toMatch(/^<sip:rr-v6@\[::1\]:5060;transport=tcp;lr;/);
    expect(local.flowRoute('tok')).toBe('<sip:tok@[::1]:5060;transport=tcp;lr>');
    expect(parseUri(local.recordRoute(flow, 'sig').slice(1, -1))?.host).toBe('[::1]');
  });

  it('recognises itself under every spelling of its address', () => {
    for (const host of ['[::1]', '[0:0:0:0:0:0:0:1]', '[::0001]']) {
      expect(local.isUs(parseUri(`sip:${host}:5060`)!), host).toBe(true);
    }
    expect(local.isUs(parseUri('sip:[::2]:5060')!)).toBe(false);
  });

  it('adds received without brackets, and only when the sent-by is another address', () => {
    const other = sipMessage(`OPTIONS sip:example.com SIP/2.0
Via: SIP/2.0/TCP [2001:db8::9:1]:5060;branch=z9hG4bKa
From: <sip:a@example.com>;tag=1
To: <sip:example.com>
Call-ID: c1
CSeq: 1 OPTIONS
Content-Length: 0

`);
    stampReceived(other, flow);
    expect(other.topVia.received).toBe('::1');
    const same = sipMessage(`OPTIONS sip:example.com SIP/2.0
Via: SIP/2.0/TCP [0:0::1]:40000;branch=z9hG4bKb
From: <sip:a@example.com>;tag=1
To: <sip:example.com>
Call-ID: c2
CSeq: 1 OPTIONS
Content-Length: 0

`);
    stampReceived(same, flow);
    expect(same.topVia.received).toBeUndefined();
  });
});
