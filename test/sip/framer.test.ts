import { describe, expect, it } from 'vitest';
import { type FramerEvent, StreamFramer } from '../../src/sip/framer.js';
import { createErrorResponseFromPartial } from '../../src/sip/response.js';
import { sip, valid } from './torture.js';

const register = sip([
  'REGISTER sip:example.com SIP/2.0',
  'Via: SIP/2.0/TCP 192.0.2.1:50000;branch=z9hG4bKreg1;rport',
  'Max-Forwards: 70',
  'From: <sip:alice@example.com>;tag=a1',
  'To: <sip:alice@example.com>',
  'Call-ID: reg-1@192.0.2.1',
  'CSeq: 1 REGISTER',
  'Contact: <sip:alice@192.0.2.1:50000;transport=tcp>;expires=3600',
  'Content-Length: 0',
]);

const message = sip(
  [
    'MESSAGE sip:bob@example.com SIP/2.0',
    'Via: SIP/2.0/TCP 192.0.2.1:50000;branch=z9hG4bKmsg1',
    'Max-Forwards: 70',
    'From: "Alice" <sip:alice@example.com>;tag=a2',
    'To: <sip:bob@example.com>',
    'Call-ID: msg-1@192.0.2.1',
    'CSeq: 2 MESSAGE',
    'Content-Type: text/plain;charset=utf-8',
    'Content-Length: {CL}',
  ],
  'Héllo\r\n\r\nwith a blank line inside',
);

function summary(events: FramerEvent[]): string[] {
  return events.map((e) => {
    if (e.type === 'message')
      return `message:${e.message.method || e.message.status}:${e.message.body.length}`;
    if (e.type === 'error') return `error:${e.status}:${e.fatal}`;
    return e.type;
  });
}

/**
 * A ping cut exactly between its two CRLFs is reported as pong then ping (the pong cannot
 * wait: it may be a real answer to our own ping); a spurious pong is harmless.
 */
function normalized(events: FramerEvent[]): string {
  return summary(events).join(',').replaceAll('pong,ping', 'ping');
}

function pushAll(framer: StreamFramer, chunks: Buffer[]): FramerEvent[] {
  const events: FramerEvent[] = [];
  for (const chunk of chunks) events.push(...framer.push(chunk));
  return events;
}

describe('StreamFramer', () => {
  it('frames one message in one chunk, body as a view into the chunk', () => {
    const framer = new StreamFramer();
    const events = framer.push(message);
    expect(summary(events)).toEqual([
      `message:MESSAGE:${Buffer.byteLength('Héllo\r\n\r\nwith a blank line inside')}`,
    ]);
    const m = (events[0] as { message: { body: Buffer } }).message;
    expect(m.body.buffer).toBe(message.buffer);
    expect(framer.buffered).toBe(0);
  });

  it('frames pipelined messages and keep-alives in one chunk', () => {
    const framer = new StreamFramer();
    const stream = Buffer.concat([register, Buffer.from('\r\n\r\n'), message, register, Buffer.from('\r\n')]);
    expect(summary(framer.push(stream))).toEqual([
      'message:REGISTER:0',
      'ping',
      `message:MESSAGE:${message.length - message.indexOf('\r\n\r\n') - 4}`,
      'message:REGISTER:0',
      'pong',
    ]);
  });

  it('pushEach hands each message over before it parses the next', () => {
    const framer = new StreamFramer();
    const seen: Array<{ what: string; buffered: number }> = [];
    framer.pushEach(Buffer.concat([register, Buffer.from('\r\n\r\n'), message]), (ev) => {
      seen.push({ what: summary([ev])[0], buffered: framer.buffered });
    });
    // While the REGISTER is handled, the keep-alive and the MESSAGE are still unread bytes.
    expect(seen).toEqual([
      { what: 'message:REGISTER:0', buffered: 4 + message.length },
      { what: 'ping', buffered: message.length },
      { what: `message:MESSAGE:${message.length - message.indexOf('\r\n\r\n') - 4}`, buffered: 0 },
    ]);
  });

  it('gives the same result whatever the split point', () => {
    const stream = Buffer.concat([register, Buffer.from('\r\n\r\n'), message, valid.mpart01, register]);
    const expected = summary(new StreamFramer().push(stream));
    expect(expected).toHaveLength(5);
    for (let cut = 1; cut < stream.length; cut++) {
      const events = pushAll(new StreamFramer(), [stream.subarray(0, cut), stream.subarray(cut)]);
      expect(normalized(events), `cut at ${cut}`).toEqual(expected.join(','));
    }
  });

  it('survives one byte at a time and three-way splits', () => {
    const stream = Buffer.concat([message, Buffer.from('\r\n\r\n'), register]);
    const expected = summary(new StreamFramer().push(stream));
    const bytes = Array.from(stream, (_, i) => stream.subarray(i, i + 1));
    expect(normalized(pushAll(new StreamFramer(), bytes))).toEqual(expected.join(','));
    for (let a = 1; a < stream.length; a += 7) {
      for (let b = a + 1; b < stream.length; b += 13) {
        const events = pushAll(new StreamFramer(), [
          stream.subarray(0, a),
          stream.subarray(a, b),
          stream.subarray(b),
        ]);
        expect(normalized(events)).toEqual(expected.join(','));
      }
    }
  });

  it('keeps messages identical to the originals', () => {
    const framer = new StreamFramer();
    const events = pushAll(framer, [
      register.subarray(0, 10),
      Buffer.concat([register.subarray(10), message]),
    ]);
    const out = events.map((e) => (e.type === 'message' ? e.message.toBuffer() : Buffer.alloc(0)));
    expect(Buffer.concat(out).equals(Buffer.concat([register, message]))).toBe(true);
  });

  it('keep-alive: CRLFCRLF is a ping, CRLF a pong; a ping split in two still reads as a ping', () => {
    expect(summary(new StreamFramer().push(Buffer.from('\r\n\r\n')))).toEqual(['ping']);
    expect(summary(new StreamFramer().push(Buffer.from('\r\n')))).toEqual(['pong']);
    expect(summary(new StreamFramer().push(Buffer.from('\r\n\r\n\r\n\r\n')))).toEqual(['ping', 'ping']);
    const split = new StreamFramer();
    expect(summary(pushAll(split, [Buffer.from('\r\n'), Buffer.from('\r\n')]))).toEqual(['pong', 'ping']);
    const bytes = new StreamFramer();
    expect(
      summary(
        pushAll(
          bytes,
          [...'\r\n\r\n'].map((c) => Buffer.from(c)),
        ),
      ),
    ).toEqual(['pong', 'ping']);
    const three = new StreamFramer();
    expect(summary(pushAll(three, [Buffer.from('\r\n\r'), Buffer.from('\n')]))).toEqual(['ping']);
  });

  it('a malformed message with a usable Content-Length is reported and the stream goes on', () => {
    const bad = sip(
      [
        'OPTIONS sip:user@example.com SIP/2.0',
        'Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKbad',
        'From: <sip:a@example.com>;tag=1',
        'To: <sip:b@example.com>',
        'CSeq: 1 OPTIONS',
        'Content-Length: 4',
      ],
      'abcd',
    );
    const events = new StreamFramer().push(Buffer.concat([bad, register]));
    expect(summary(events)).toEqual(['error:400:false', 'message:REGISTER:0']);
    const error = events[0];
    expect(error.type === 'error' && error.reason).toBe('Bad Request - Missing Call-ID');
  });

  it('missing or negative Content-Length on a stream is fatal, with enough to answer', () => {
    const noLength = sip(
      register
        .toString()
        .split('\r\n')
        .filter((l) => l && !l.startsWith('Content-Length')),
    );
    const framer = new StreamFramer();
    const events = framer.push(Buffer.concat([noLength, register]));
    expect(summary(events)).toEqual(['error:400:true']);
    const error = events[0];
    if (error.type !== 'error') throw new Error('expected error');
    expect(error.reason).toMatch(/Content-Length/);
    const response = createErrorResponseFromPartial(error);
    expect(response?.status).toBe(400);
    expect(response?.callId).toBe('reg-1@192.0.2.1');
    expect(framer.push(register)).toEqual([]);

    const negative = Buffer.from(register.toString().replace('Content-Length: 0', 'Content-Length: -5'));
    expect(summary(new StreamFramer().push(negative))).toEqual(['error:400:true']);
  });

  it('an endless header section is fatal 413 once past the limit', () => {
    const framer = new StreamFramer({ maxMessageSize: 4096 });
    const events: FramerEvent[] = [];
    events.push(...framer.push(Buffer.from('OPTIONS sip:x@example.com SIP/2.0\r\n')));
    for (let i = 0; i < 200 && events.length === 0; i++) {
      events.push(...framer.push(Buffer.from(`X-Filler-${i}: ${'z'.repeat(40)}\r\n`)));
    }
    expect(summary(events)).toEqual(['error:413:true']);
  });

  it('a Content-Length past the maximum size is fatal 413 before the body is buffered', () => {
    const huge = Buffer.from(register.toString().replace('Content-Length: 0', 'Content-Length: 1000000'));
    expect(summary(new StreamFramer().push(huge))).toEqual(['error:413:true']);
  });

  it('binary junk such as a TLS ClientHello fails at once', () => {
    const hello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
    expect(summary(new StreamFramer().push(hello))).toEqual(['error:400:true']);
  });

  it('waits for a body that arrives later', () => {
    const framer = new StreamFramer();
    const headEnd = message.indexOf('\r\n\r\n') + 4;
    expect(framer.push(message.subarray(0, headEnd + 2))).toEqual([]);
    expect(framer.buffered).toBe(headEnd + 2);
    expect(summary(framer.push(message.subarray(headEnd + 2)))).toHaveLength(1);
  });
});

describe('StreamFramer robustness', () => {
  it('never throws on mutated streams cut at random places', () => {
    let state = 7;
    const rand = () => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state;
    };
    const stream = Buffer.concat([register, Buffer.from('\r\n\r\n'), message, valid.wsinv, register]);
    for (let n = 0; n < 500; n++) {
      const copy = Buffer.from(stream);
      for (let k = 0; k < n % 6; k++) copy[rand() % copy.length] = rand() % 256;
      const framer = new StreamFramer();
      let at = 0;
      while (at < copy.length) {
        const size = 1 + (rand() % 200);
        for (const ev of framer.push(copy.subarray(at, at + size))) {
          if (ev.type === 'message') ev.message.toBuffer();
          if (ev.type === 'error') createErrorResponseFromPartial(ev)?.toBuffer();
        }
        at += size;
      }
    }
  });
});
