import { describe, expect, it } from 'vitest';
import { CompletedResponses } from '../../src/transaction/completed.js';
import { FakeFlow } from '../support/flow-fake.js';

const response = (n: number) =>
  Buffer.from(
    `SIP/2.0 200 OK\r\nCall-ID: c${n}\r\nCSeq: ${n} MESSAGE\r\nContent-Length: 0\r\n\r\n`,
    'latin1',
  );

describe('CompletedResponses (RFC 3261 17.2.2, Timer J over UDP)', () => {
  it('gives back each response byte for byte, across slabs and for one larger than a slab', () => {
    // 100-byte slabs: each holds one or two of these responses, so most of them start a new one.
    const store = new CompletedResponses(100);
    const flow = new FakeFlow('u1', 'udp');
    const big = Buffer.alloc(250, 'x');
    for (let n = 0; n < 50; n++) store.add(`k${n}`, flow, response(n), 1_000 + n);
    store.add('big', flow, big, 2_000);
    expect(store.size).toBe(51);
    for (let n = 0; n < 50; n++) {
      const found = store.find(`k${n}`);
      expect(found?.flow).toBe(flow);
      expect(found?.wire.equals(response(n))).toBe(true);
    }
    expect(store.find('big')?.wire.equals(big)).toBe(true);
    expect(store.find('nothing')).toBeUndefined();
  });

  it('expires in the order entries came, says when the next expires, and moves a re-added key to the back', () => {
    const store = new CompletedResponses(64);
    const flow = new FakeFlow('u1', 'udp');
    store.add('a', flow, response(1), 100);
    store.add('b', flow, response(2), 200);
    store.add('a', flow, response(3), 300);
    expect(store.size).toBe(2);
    expect(store.expire(150)).toBe(200);
    expect(store.find('a')?.wire.equals(response(3))).toBe(true);
    expect(store.expire(250)).toBe(300);
    expect(store.find('b')).toBeUndefined();
    expect(store.expire(300)).toBeUndefined();
    expect(store.size).toBe(0);
    // Usable again once emptied.
    store.add('c', flow, response(4), 400);
    expect(store.find('c')?.wire.equals(response(4))).toBe(true);
  });

  it('uses an emptied slab again, only after the sweep that emptied it, and keeps each response intact', () => {
    // 100-byte slabs, responses of 60-odd bytes: one per slab.
    const store = new CompletedResponses(100);
    const flow = new FakeFlow('u1', 'udp');
    store.add('a', flow, response(1), 100);
    store.add('b', flow, response(2), 200);
    const slabA = store.find('a')?.wire.buffer;
    const slabB = store.find('b')?.wire.buffer;
    expect(slabA).not.toBe(slabB);
    // a expires: its slab rests through this sweep, so the next response gets a new one.
    expect(store.expire(150)).toBe(200);
    store.add('c', flow, response(3), 300);
    expect(store.find('c')?.wire.buffer).not.toBe(slabA);
    // After the next sweep a's slab is used again, and it now holds d's response.
    expect(store.expire(160)).toBe(200);
    store.add('d', flow, response(4), 400);
    expect(store.find('d')?.wire.buffer).toBe(slabA);
    expect(store.find('d')?.wire.equals(response(4))).toBe(true);
    expect(store.find('b')?.wire.equals(response(2))).toBe(true);
    expect(store.find('c')?.wire.equals(response(3))).toBe(true);
  });
});
