import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/ops/log.js';
import { ProxyContext } from '../../src/proxy/forward.js';
import { LocalIdentity } from '../../src/proxy/local.js';
import type { SipMessage } from '../../src/sip/message.js';
import { createResponse } from '../../src/sip/response.js';
import { type ServerTransaction, TransactionLayer } from '../../src/transaction/layer.js';
import { TimerWheel } from '../../src/transaction/timers.js';
import { FakeFlow, sipMessage } from '../support/flow-fake.js';

function setup(method: 'INVITE' | 'MESSAGE') {
  const layer = new TransactionLayer({ timers: new TimerWheel(undefined, 50, false), log: silentLogger() });
  const local = new LocalIdentity('example.com', [{ transport: 'tcp', host: '127.0.0.1', port: 5060 }]);
  let st!: ServerTransaction;
  layer.setUser({
    onRequest: (_req, t) => {
      st = t;
    },
    onAck: () => undefined,
    onCancel: (invite) => (invite.context as ProxyContext).cancel(),
    onStrayResponse: () => undefined,
  });
  const caller = new FakeFlow('caller');
  layer.receive(
    sipMessage(`${method} sip:bob@example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKup1
From: <sip:alice@example.com>;tag=a
To: <sip:bob@example.com>
Call-ID: fork-1
CSeq: 1 ${method}
Max-Forwards: 70
Content-Length: 0

`),
    caller,
  );
  const desk = new FakeFlow('desk');
  const phone = new FakeFlow('phone');
  const finals: number[] = [];
  const ctx = new ProxyContext(st, layer, local, silentLogger(), {
    recordRoute: method === 'INVITE' ? 'sig0123456789abc' : undefined,
    onFinal: (s) => finals.push(s),
  });
  ctx.start([
    { uri: 'sip:bob@desk.invalid', resolve: async () => desk },
    { uri: 'sip:bob@phone.invalid', resolve: async () => phone },
  ]);
  const flush = () => new Promise((r) => setImmediate(r));
  const answer = (flow: FakeFlow, status: number) => {
    const forwarded = flow.sent.find((m) => m.method === method) as SipMessage;
    layer.receive(createResponse(forwarded, status, undefined, { toTag: flow.id }), flow);
  };
  return { layer, ctx, caller, desk, phone, finals, flush, answer };
}

describe('forking proxy (RFC 3261 16.6-16.7)', () => {
  it('sends a copy to every target, each with our Via on top and Max-Forwards decremented', async () => {
    const { desk, phone, flush } = setup('MESSAGE');
    await flush();
    for (const flow of [desk, phone]) {
      const copy = flow.sent[0];
      expect(copy.getAll('via')).toHaveLength(2);
      expect(copy.topVia.host).toBe('127.0.0.1');
      expect(copy.maxForwards).toBe(69);
    }
    expect(desk.sent[0].uri).toBe('sip:bob@desk.invalid');
    expect(phone.sent[0].uri).toBe('sip:bob@phone.invalid');
    expect(desk.sent[0].topVia.branch).not.toBe(phone.sent[0].topVia.branch);
  });

  it('forwards the first 2xx upstream without our Via', async () => {
    const { caller, flush, answer, desk, phone, finals } = setup('MESSAGE');
    await flush();
    answer(phone, 486);
    answer(desk, 200);
    const up = caller.sent.filter((m) => m.status >= 200);
    expect(up.map((m) => m.status)).toEqual([200]);
    expect(up[0].getAll('via')).toHaveLength(1);
    expect(finals).toEqual([200]);
  });

  it('still delivers a MESSAGE to a target whose connection came up after another branch answered 200', async () => {
    const layer = new TransactionLayer({ timers: new TimerWheel(undefined, 50, false), log: silentLogger() });
    const local = new LocalIdentity('example.com', [{ transport: 'tcp', host: '127.0.0.1', port: 5060 }]);
    let st!: ServerTransaction;
    layer.setUser({
      onRequest: (_req, t) => {
        st = t;
      },
      onAck: () => undefined,
      onCancel: () => undefined,
      onStrayResponse: () => undefined,
    });
    const caller = new FakeFlow('caller');
    layer.receive(
      sipMessage(`MESSAGE sip:bob@example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKslow1
From: <sip:alice@example.com>;tag=a
To: <sip:bob@example.com>
Call-ID: fork-slow
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Length: 0

`),
      caller,
    );
    const near = new FakeFlow('near');
    const far = new FakeFlow('far');
    let connected!: (f: FakeFlow) => void;
    const ctx = new ProxyContext(st, layer, local, silentLogger(), {});
    ctx.start([
      { uri: 'sip:bob@near.invalid', resolve: async () => near },
      { uri: 'sip:bob@far.invalid', resolve: () => new Promise((r) => (connected = r)) },
    ]);
    await new Promise((r) => setImmediate(r));
    const copy = near.sent.find((m) => m.method === 'MESSAGE') as SipMessage;
    layer.receive(createResponse(copy, 200, undefined, { toTag: 'near' }), near);
    expect(caller.sent.filter((m) => m.status >= 200).map((m) => m.status)).toEqual([200]);
    connected(far);
    await new Promise((r) => setImmediate(r));
    expect(far.sent.map((m) => m.method)).toEqual(['MESSAGE']);
    // Its answer is absorbed: the sender already has its final response.
    layer.receive(createResponse(far.sent[0], 200, undefined, { toTag: 'far' }), far);
    expect(caller.sent.filter((m) => m.status >= 200)).toHaveLength(1);
  });

  it('picks the best of the failures once every branch has answered', async () => {
    const { caller, flush, answer, desk, phone } = setup('MESSAGE');
    await flush();
    answer(desk, 480);
    expect(caller.sent.filter((m) => m.status >= 200)).toHaveLength(0);
    answer(phone, 486);
    expect(caller.sent.filter((m) => m.status >= 200).map((m) => m.status)).toEqual([486]);
  });

  it('INVITE: Record-Routes, and a CANCEL from upstream cancels every ringing branch', async () => {
    const { layer, caller, flush, answer, desk, phone } = setup('INVITE');
    await flush();
    expect(desk.sent[0].get('record-route')).toMatch(/;lr;dlg=sig0123456789abc>/);
    answer(desk, 180);
    answer(phone, 180);
    layer.receive(
      sipMessage(`CANCEL sip:bob@example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKup1
From: <sip:alice@example.com>;tag=a
To: <sip:bob@example.com>
Call-ID: fork-1
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

`),
      caller,
    );
    for (const flow of [desk, phone]) expect(flow.sent.some((m) => m.method === 'CANCEL')).toBe(true);
    answer(desk, 487);
    answer(phone, 487);
    expect(
      caller.sent.filter((m) => m.status >= 200 && m.cseq.method === 'INVITE').map((m) => m.status),
    ).toEqual([487]);
  });
});
