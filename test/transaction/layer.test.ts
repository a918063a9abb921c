import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/ops/log.js';
import type { SipMessage } from '../../src/sip/message.js';
import { createResponse } from '../../src/sip/response.js';
import {
  type ClientTransaction,
  type ServerTransaction,
  T1,
  T2,
  TIMER_B,
  TIMER_D,
  TIMER_F,
  TIMER_H,
  TIMER_I,
  TIMER_J,
  TIMER_K,
  TransactionLayer,
  type TransactionUser,
  TU_ANSWER_DEADLINE,
  TU_ANSWER_DEADLINE_INVITE,
} from '../../src/transaction/layer.js';
import { TimerWheel } from '../../src/transaction/timers.js';
import { FakeFlow, sipMessage } from '../support/flow-fake.js';

function setup() {
  let now = 1_000_000;
  const clock = { now: () => now };
  const timers = new TimerWheel(clock, 50, false);
  const layer = new TransactionLayer({ timers, log: silentLogger() });
  const events: string[] = [];
  const requests: ServerTransaction[] = [];
  const tu: TransactionUser = {
    onRequest: (req, st) => {
      events.push(`request ${req.method}`);
      requests.push(st);
    },
    onAck: (ack) => events.push(`ack ${ack.cseq.seq}`),
    onCancel: (invite) => events.push(`cancel ${invite.request.callId}`),
    onStrayResponse: (res) => events.push(`stray ${res.status}`),
  };
  layer.setUser(tu);
  const advance = (ms: number) => {
    now += ms;
    timers.advance();
  };
  return { layer, timers, events, requests, advance };
}

const invite = (branch = 'z9hG4bKinv1') =>
  sipMessage(`INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=${branch}
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: call-1
CSeq: 1 INVITE
Max-Forwards: 70
Content-Length: 0

`);

const message = (branch = 'z9hG4bKmsg1') =>
  sipMessage(`MESSAGE sip:bob@example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=${branch}
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: msg-1
CSeq: 7 MESSAGE
Max-Forwards: 70
Content-Length: 0

`);

describe('server transactions (RFC 3261 17.2)', () => {
  it('non-INVITE: Trying -> Completed -> Terminated at once on a reliable transport (Timer J = 0)', () => {
    const { layer, events, requests } = setup();
    const flow = new FakeFlow();
    layer.receive(message(), flow);
    expect(events).toEqual(['request MESSAGE']);
    const st = requests[0];
    expect(st.state).toBe('Trying');
    st.reply(200);
    expect(st.state).toBe('Terminated');
    expect(flow.sent.map((m) => m.status)).toEqual([200]);
    expect(layer.serverCount).toBe(0);
  });

  it('absorbs a retransmission while Proceeding and resends the last provisional response', () => {
    const { layer, events, requests } = setup();
    const flow = new FakeFlow();
    layer.receive(message(), flow);
    requests[0].reply(100);
    layer.receive(message(), flow);
    expect(events).toEqual(['request MESSAGE']);
    expect(flow.sent.map((m) => m.status)).toEqual([100, 100]);
  });

  it('a request its TU never answers gets a 500 at its deadline (an INVITE at its own, longer one), and only that one', () => {
    const { layer, requests, advance } = setup();
    const flow = new FakeFlow();
    layer.receive(message('z9hG4bKlost'), flow);
    layer.receive(invite('z9hG4bKring'), flow);
    advance(10_000);
    layer.receive(message('z9hG4bKlater'), flow);
    layer.receive(message('z9hG4bKanswered'), flow);
    requests[3].reply(200);
    expect(layer.serverCount).toBe(3);
    advance(TU_ANSWER_DEADLINE - 10_000 - 1_100);
    expect(flow.sent.map((m) => m.status)).toEqual([100, 200]);
    advance(2_200);
    // The first MESSAGE is past its deadline; the INVITE (still ringing) and the later one are not.
    expect(flow.sent.map((m) => `${m.status} ${m.cseq.method}`)).toEqual([
      '100 INVITE',
      '200 MESSAGE',
      '500 MESSAGE',
    ]);
    expect(requests[0].state).toBe('Terminated');
    expect(layer.tuFailures).toBe(1);
    advance(10_000);
    expect(requests[2].state).toBe('Terminated');
    expect(requests[1].state).toBe('Proceeding');
    advance(TU_ANSWER_DEADLINE_INVITE - TU_ANSWER_DEADLINE - 10_000);
    expect(flow.sent.filter((m) => m.status === 500).map((m) => m.cseq.method)).toEqual([
      'MESSAGE',
      'MESSAGE',
      'INVITE',
    ]);
    // The INVITE's 500 waits for its ACK (Timer H), as any INVITE failure does.
    expect(requests[1].state).toBe('Completed');
    expect(layer.tuFailures).toBe(3);
  });

  it('INVITE: sends 100 Trying by itself after 200 ms when the TU is silent (RFC 3261 16.2)', () => {
    const { layer, requests, advance } = setup();
    const flow = new FakeFlow();
    layer.receive(invite(), flow);
    expect(flow.sent).toHaveLength(0);
    advance(250);
    expect(flow.sent.map((m) => m.status)).toEqual([100]);
    expect(requests[0].state).toBe('Proceeding');
  });

  it('INVITE non-2xx: Completed until the ACK (Confirmed, then Terminated), the ACK absorbed', () => {
    const { layer, events, requests } = setup();
    const flow = new FakeFlow();
    layer.receive(invite(), flow);
    const st = requests[0];
    st.reply(486, 'Busy Here', { toTag: 'b1' });
    expect(st.state).toBe('Completed');
    layer.receive(
      sipMessage(`ACK sip:bob@example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKinv1
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag=b1
Call-ID: call-1
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

`),
      flow,
    );
    expect(st.state).toBe('Terminated');
    expect(events).toEqual(['request INVITE']);
  });

  it('INVITE non-2xx: Timer H ends the transaction when no ACK comes', () => {
    const { layer, requests, advance } = setup();
    layer.receive(invite(), new FakeFlow());
    const st = requests[0];
    st.reply(404);
    advance(TIMER_H - 100);
    expect(st.state).toBe('Completed');
    advance(200);
    expect(st.state).toBe('Terminated');
  });

  it('INVITE 2xx: Accepted (RFC 6026), the ACK for the 2xx goes to the TU, Timer L ends it', () => {
    const { layer, events, requests, advance } = setup();
    const flow = new FakeFlow();
    layer.receive(invite(), flow);
    const st = requests[0];
    st.reply(200, undefined, { toTag: 'b1' });
    expect(st.state).toBe('Accepted');
    layer.receive(
      sipMessage(`ACK sip:bob@192.0.2.20 SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKack2
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag=b1
Call-ID: call-1
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

`),
      flow,
    );
    expect(events).toEqual(['request INVITE', 'ack 1']);
    advance(32_100);
    expect(st.state).toBe('Terminated');
  });

  it('CANCEL: 200 for the CANCEL and the TU told; 481 when nothing matches', () => {
    const { layer, events } = setup();
    const flow = new FakeFlow();
    layer.receive(invite(), flow);
    const cancel = (branch: string) =>
      sipMessage(`CANCEL sip:bob@example.com SIP/2.0
Via: SIP/2.0/TCP 192.0.2.10:5060;branch=${branch}
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: call-1
CSeq: 1 CANCEL
Max-Forwards: 70
Content-Length: 0

`);
    layer.receive(cancel('z9hG4bKinv1'), flow);
    layer.receive(cancel('z9hG4bKother'), flow);
    expect(events).toEqual(['request INVITE', 'cancel call-1']);
    expect(flow.sent.map((m) => `${m.status} ${m.cseq.method}`)).toEqual(['200 CANCEL', '481 CANCEL']);
  });
});

describe('client transactions (RFC 3261 17.1)', () => {
  function outgoing(method: 'MESSAGE' | 'INVITE', branch: string): SipMessage {
    return sipMessage(`${method} sip:bob@192.0.2.20 SIP/2.0
Via: SIP/2.0/TCP 127.0.0.1:5060;branch=${branch}
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: out-1
CSeq: 1 ${method}
Max-Forwards: 70
Content-Length: 0

`);
  }

  it('non-INVITE: the final response reaches the handler, Timer F never fires', () => {
    const { layer, advance } = setup();
    const flow = new FakeFlow();
    const seen: number[] = [];
    let timedOut = false;
    const req = outgoing('MESSAGE', 'z9hG4bKc1');
    const ct = layer.request(req, flow, {
      onResponse: (r) => seen.push(r.status),
      onTimeout: () => (timedOut = true),
    });
    layer.receive(createResponse(req, 200, undefined, { toTag: 'x' }), flow);
    advance(TIMER_F + 1000);
    expect(seen).toEqual([200]);
    expect(timedOut).toBe(false);
    expect(ct.state).toBe('Terminated');
  });

  it('non-INVITE: Timer F fires after 64*T1 without a final response', () => {
    const { layer, advance } = setup();
    let reason = '';
    const ct: ClientTransaction = layer.request(outgoing('MESSAGE', 'z9hG4bKc2'), new FakeFlow(), {
      onResponse: () => undefined,
      onTimeout: (_t, r) => (reason = r),
    });
    advance(TIMER_F - 100);
    expect(reason).toBe('');
    advance(200);
    expect(reason).toBe('timeout');
    expect(ct.state).toBe('Terminated');
  });

  it('INVITE: a non-2xx final response is ACKed by the transaction with the same branch', () => {
    const { layer } = setup();
    const flow = new FakeFlow();
    const req = outgoing('INVITE', 'z9hG4bKc3');
    layer.request(req, flow, { onResponse: () => undefined, onTimeout: () => undefined });
    layer.receive(createResponse(req, 486, 'Busy Here', { toTag: 'busy' }), flow);
    const ack = flow.sent.find((m) => m.method === 'ACK');
    expect(ack).toBeDefined();
    expect(ack?.topVia.branch).toBe('z9hG4bKc3');
    expect(ack?.to.tag).toBe('busy');
    expect(ack?.cseq).toEqual({ seq: 1, method: 'ACK' });
  });

  it('INVITE: Timer B fires when nothing answers; a 2xx keeps it Accepted for retransmissions', () => {
    const { layer, advance } = setup();
    let timedOut = false;
    layer.request(outgoing('INVITE', 'z9hG4bKc4'), new FakeFlow(), {
      onResponse: () => undefined,
      onTimeout: () => (timedOut = true),
    });
    advance(TIMER_B + 100);
    expect(timedOut).toBe(true);

    const flow = new FakeFlow();
    const req = outgoing('INVITE', 'z9hG4bKc5');
    const oks: number[] = [];
    const ct = layer.request(req, flow, {
      onResponse: (r) => oks.push(r.status),
      onTimeout: () => undefined,
    });
    layer.receive(createResponse(req, 200, undefined, { toTag: 't1' }), flow);
    layer.receive(createResponse(req, 200, undefined, { toTag: 't2' }), flow);
    expect(ct.state).toBe('Accepted');
    expect(oks).toEqual([200, 200]);
  });

  it('INVITE: a provisional response stops Timer B (RFC 3261 17.1.1.2): a long ring is not a timeout', () => {
    const { layer, advance } = setup();
    const flow = new FakeFlow();
    let timedOut = false;
    const req = outgoing('INVITE', 'z9hG4bKc6');
    const ct = layer.request(req, flow, { onResponse: () => undefined, onTimeout: () => (timedOut = true) });
    layer.receive(createResponse(req, 180, 'Ringing', { toTag: 'r' }), flow);
    advance(TIMER_B * 2);
    expect(timedOut).toBe(false);
    expect(ct.state).toBe('Proceeding');
  });

  it('each transaction times out at 64*T1 from its own start, whatever rings or was answered before it', () => {
    const { layer, advance } = setup();
    const flow = new FakeFlow();
    const timedOut: string[] = [];
    const handler = (name: string) => ({
      onResponse: () => undefined,
      onTimeout: () => timedOut.push(name),
    });
    const ringing = outgoing('INVITE', 'z9hG4bKring');
    layer.request(ringing, flow, handler('ringing'));
    layer.receive(createResponse(ringing, 180, 'Ringing', { toTag: 'r' }), flow);
    advance(1_000);
    const answered = outgoing('MESSAGE', 'z9hG4bKok');
    layer.request(answered, flow, handler('answered'));
    layer.request(outgoing('MESSAGE', 'z9hG4bKlost1'), flow, handler('lost1'));
    layer.receive(createResponse(answered, 200), flow);
    advance(1_000);
    layer.request(outgoing('MESSAGE', 'z9hG4bKlost2'), flow, handler('lost2'));
    advance(TIMER_F - 1_000 - 100);
    expect(timedOut).toEqual([]);
    advance(200);
    expect(timedOut).toEqual(['lost1']);
    advance(1_000);
    expect(timedOut).toEqual(['lost1', 'lost2']);
    // The ringing INVITE is the proxy's Timer C's to end, not Timer B's.
    expect(layer.clientCount).toBe(1);
  });

  it('a response matching no transaction goes to the TU as stray', () => {
    const { layer, events } = setup();
    layer.receive(createResponse(outgoing('MESSAGE', 'z9hG4bKnone'), 200), new FakeFlow());
    expect(events).toEqual(['stray 200']);
  });
});

describe('UDP (RFC 3261 17 timers for unreliable transports, 18.2)', () => {
  const udpRequest = (method: 'MESSAGE' | 'INVITE', via: string) =>
    sipMessage(`${method} sip:bob@example.com SIP/2.0
Via: ${via}
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>
Call-ID: udp-1
CSeq: 1 ${method}
Max-Forwards: 70
Content-Length: 0

`);
  const outgoing = (method: 'MESSAGE' | 'INVITE', branch: string) =>
    udpRequest(method, `SIP/2.0/UDP 127.0.0.1:5060;branch=${branch}`);

  it('non-INVITE server: Completed answers retransmissions until Timer J', () => {
    const { layer, events, requests, advance } = setup();
    const flow = new FakeFlow('u1', 'udp', '192.0.2.10', 5060);
    const req = () => udpRequest('MESSAGE', 'SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKu1');
    layer.receive(req(), flow);
    requests[0].reply(200);
    expect(requests[0].state).toBe('Completed');
    expect(layer.serverCount).toBe(1);
    layer.receive(req(), flow);
    expect(events).toEqual(['request MESSAGE']);
    expect(flow.sent.map((m) => m.status)).toEqual([200, 200]);
    // The retransmission's answer is the first response, byte for byte.
    expect(flow.raw[1].equals(flow.raw[0])).toBe(true);
    advance(TIMER_J + 100);
    expect(layer.serverCount).toBe(0);
    // Past Timer J the same request is a new one.
    layer.receive(req(), flow);
    expect(events).toEqual(['request MESSAGE', 'request MESSAGE']);
  });

  it('non-INVITE server: each Completed transaction lasts its own Timer J, whatever came before or after', () => {
    const { layer, events, requests, advance } = setup();
    const flow = new FakeFlow('u1', 'udp', '192.0.2.10', 5060);
    const req = (n: number) => udpRequest('MESSAGE', `SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKj${n}`);
    layer.receive(req(1), flow);
    requests[0].reply(200);
    advance(10_000);
    layer.receive(req(2), flow);
    requests[1].reply(404);
    advance(TIMER_J - 10_000 + 100);
    // The first is past its Timer J, the second 10 s short of it.
    expect(layer.serverCount).toBe(1);
    layer.receive(req(2), flow);
    expect(flow.sent.map((m) => m.status)).toEqual([200, 404, 404]);
    advance(10_000);
    expect(layer.serverCount).toBe(0);
    // A third one after the map emptied is answered and expires as well.
    layer.receive(req(3), flow);
    requests[2].reply(200);
    expect(layer.serverCount).toBe(1);
    advance(TIMER_J + 100);
    expect(layer.serverCount).toBe(0);
    expect(events).toEqual(['request MESSAGE', 'request MESSAGE', 'request MESSAGE']);
  });

  it('INVITE server: Timer G retransmits a failure, doubling to T2, until the ACK; Timer I then ends it', () => {
    const { layer, requests, advance } = setup();
    const flow = new FakeFlow('u1', 'udp', '192.0.2.10', 5060);
    const via = 'SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKu2';
    layer.receive(udpRequest('INVITE', via), flow);
    requests[0].reply(486, 'Busy Here', { toTag: 'b1' });
    for (const step of [T1, 2 * T1, 4 * T1, T2, T2]) advance(step + 60);
    expect(flow.sent.map((m) => m.status)).toEqual([486, 486, 486, 486, 486, 486]);
    layer.receive(
      sipMessage(`ACK sip:bob@example.com SIP/2.0
Via: ${via}
From: <sip:alice@example.com>;tag=a1
To: <sip:bob@example.com>;tag=b1
Call-ID: udp-1
CSeq: 1 ACK
Content-Length: 0

`),
      flow,
    );
    expect(requests[0].state).toBe('Confirmed');
    advance(T2 + 10);
    expect(flow.sent).toHaveLength(6);
    advance(TIMER_I);
    expect(requests[0].state).toBe('Terminated');
  });

  it('non-INVITE client: Timer E retransmits (T1, 2T1 ... T2), a final response stops it, Timer K ends it', () => {
    const { layer, advance } = setup();
    const flow = new FakeFlow('u2', 'udp', '192.0.2.20', 5060);
    const req = outgoing('MESSAGE', 'z9hG4bKu3');
    const ct = layer.request(req, flow, { onResponse: () => undefined, onTimeout: () => undefined });
    for (const step of [T1, 2 * T1, 4 * T1, T2]) advance(step + 60);
    expect(flow.raw).toHaveLength(5);
    layer.receive(createResponse(req, 200, undefined, { toTag: 'x' }), flow);
    expect(ct.state).toBe('Completed');
    advance(T2 + 10);
    expect(flow.raw).toHaveLength(5);
    advance(TIMER_K);
    expect(ct.state).toBe('Terminated');
  });

  it('INVITE client: Timer A doubles until a provisional; a retransmitted failure gets the ACK again', () => {
    const { layer, advance } = setup();
    const flow = new FakeFlow('u2', 'udp', '192.0.2.20', 5060);
    const req = outgoing('INVITE', 'z9hG4bKu4');
    const ct = layer.request(req, flow, { onResponse: () => undefined, onTimeout: () => undefined });
    for (const step of [T1, 2 * T1, 4 * T1]) advance(step + 60);
    expect(flow.sent.filter((m) => m.method === 'INVITE')).toHaveLength(4);
    layer.receive(createResponse(req, 180, undefined, { toTag: 'r' }), flow);
    advance(8 * T1 + 10);
    expect(flow.sent.filter((m) => m.method === 'INVITE')).toHaveLength(4);
    const busy = createResponse(req, 486, 'Busy Here', { toTag: 'r' });
    layer.receive(busy, flow);
    layer.receive(busy, flow);
    expect(flow.sent.filter((m) => m.method === 'ACK')).toHaveLength(2);
    expect(ct.state).toBe('Completed');
    advance(TIMER_D + 100);
    expect(ct.state).toBe('Terminated');
  });

  it('reliable transports keep Timers J and K at zero (no state kept after the final response)', () => {
    const { layer, requests } = setup();
    layer.receive(message(), new FakeFlow());
    requests[0].reply(200);
    expect(layer.serverCount).toBe(0);
  });

  it('adds received when the sent-by host is not the source, and fills rport when asked (RFC 3581)', () => {
    const { layer, requests } = setup();
    const flow = new FakeFlow('u3', 'udp', '203.0.113.7', 61000);
    layer.receive(udpRequest('MESSAGE', 'SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnat;rport'), flow);
    const via = requests[0].request.topVia;
    expect(via.received).toBe('203.0.113.7');
    expect(via.rport).toBe(61000);
    requests[0].reply(200);
    // rport: the response goes back to the source port, over the flow it came on.
    expect(flow.sent[0].topVia).toMatchObject({ received: '203.0.113.7', rport: 61000 });

    const tcp = new FakeFlow('t1', 'tcp', '198.51.100.1', 40000);
    layer.receive(message('z9hG4bKtcp'), tcp);
    expect(requests[1].request.topVia.received).toBe('198.51.100.1');
    expect(requests[1].request.topVia.rport).toBeUndefined();
    // Same host as the source, no rport: the Via stays as it was.
    layer.receive(message('z9hG4bKsame'), new FakeFlow('t2'));
    expect(requests[2].request.get('via')).toBe('SIP/2.0/TCP 192.0.2.10:5060;branch=z9hG4bKsame');
  });

  it('without rport a UDP response goes to the sent-by port (RFC 3261 18.2.2)', () => {
    let now = 0;
    const timers = new TimerWheel({ now: () => now }, 50, false);
    const other = new FakeFlow('u5', 'udp', '192.0.2.10', 5070);
    const layer = new TransactionLayer({
      timers,
      log: silentLogger(),
      udpFlowTo: (host, port) => (host === '192.0.2.10' && port === 5070 ? other : undefined),
    });
    const sts: ServerTransaction[] = [];
    layer.setUser({
      onRequest: (_r, st) => sts.push(st),
      onAck: () => undefined,
      onCancel: () => undefined,
      onStrayResponse: () => undefined,
    });
    const source = new FakeFlow('u4', 'udp', '192.0.2.10', 34567);
    layer.receive(udpRequest('MESSAGE', 'SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKsb'), source);
    sts[0].reply(200);
    expect(source.sent).toHaveLength(0);
    expect(other.sent.map((m) => m.status)).toEqual([200]);
    now += 1;
  });

  it('a request over 1,300 bytes goes over a stream to the same peer (RFC 3261 18.1.1)', async () => {
    let now = 0;
    const timers = new TimerWheel({ now: () => now }, 50, false);
    const stream = new FakeFlow('t9', 'tcp', '192.0.2.20', 5060);
    const layer = new TransactionLayer({
      timers,
      log: silentLogger(),
      streamFor: async (request) => {
        const branch = request.topVia.branch;
        request.removeFirst('via');
        request.prepend('via', `SIP/2.0/TCP 127.0.0.1:5060;branch=${branch}`);
        return stream;
      },
    });
    const udp = new FakeFlow('u6', 'udp', '192.0.2.20', 5060);
    const big = outgoing('MESSAGE', 'z9hG4bKbig');
    big.body = Buffer.alloc(1400, 'x');
    const ct = layer.request(big, udp, { onResponse: () => undefined, onTimeout: () => undefined });
    await new Promise((r) => setTimeout(r, 0));
    expect(udp.raw).toHaveLength(0);
    expect(stream.sent[0].topVia.transport).toBe('TCP');
    expect(ct.flow).toBe(stream);
    now += 4 * T1;
    timers.advance();
    expect(stream.raw).toHaveLength(1);
    // Small requests stay on UDP.
    layer.request(outgoing('MESSAGE', 'z9hG4bKsmall'), udp, {
      onResponse: () => undefined,
      onTimeout: () => undefined,
    });
    expect(udp.raw).toHaveLength(1);
  });
});

describe('overload (RFC 3261 21.5.4)', () => {
  it('past maxServerTransactions a new request gets 503 with Retry-After and no transaction', () => {
    const timers = new TimerWheel({ now: () => 0 }, 50, false);
    const refused: string[] = [];
    const layer = new TransactionLayer({
      timers,
      log: silentLogger(),
      maxServerTransactions: 2,
      onOverload: (r) => refused.push(r.topVia.branch ?? ''),
    });
    const open: ServerTransaction[] = [];
    layer.setUser({
      onRequest: (_req, st) => open.push(st),
      onAck: () => undefined,
      onCancel: () => undefined,
      onStrayResponse: () => undefined,
    });
    const flow = new FakeFlow();
    layer.receive(message('z9hG4bKo1'), flow);
    layer.receive(message('z9hG4bKo2'), flow);
    // A retransmission of an open one is absorbed, not refused.
    layer.receive(message('z9hG4bKo2'), flow);
    expect(refused).toEqual([]);
    layer.receive(message('z9hG4bKo3'), flow);
    expect(refused).toEqual(['z9hG4bKo3']);
    expect(open).toHaveLength(2);
    expect(layer.serverCount).toBe(2);
    const last = flow.sent.at(-1)!;
    expect(last.status).toBe(503);
    expect(last.get('retry-after')).toBe('5');
    expect(last.to.tag).toBeTruthy();
    expect(last.topVia.branch).toBe('z9hG4bKo3');
    // Once one is answered (Timer J is 0 on TCP), there is room again.
    open[0].reply(200);
    layer.receive(message('z9hG4bKo4'), flow);
    expect(open).toHaveLength(3);
  });
});
