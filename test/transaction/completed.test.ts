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
});
