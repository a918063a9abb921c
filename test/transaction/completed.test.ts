import { describe, expect, it } from 'vitest';
import { type CompletedAnswer, CompletedTransactions } from '../../src/transaction/completed.js';
import { FakeFlow } from '../support/flow-fake.js';

const response = (n: number) =>
  Buffer.from(
    `SIP/2.0 200 OK\r\nCall-ID: c${n}\r\nCSeq: ${n} MESSAGE\r\nContent-Length: 0\r\n\r\n`,
    'latin1',
  );

const wireOf = (answer: CompletedAnswer | undefined) =>
  answer !== undefined && 'wire' in answer ? answer.wire : undefined;
const timeOf = (answer: CompletedAnswer | undefined) =>
  answer !== undefined && 'issuedAt' in answer ? answer.issuedAt : undefined;

describe('CompletedTransactions (RFC 3261 17.2.2, Timer J over UDP)', () => {
  it('gives back each response byte for byte, across slabs and for one larger than a slab', () => {
    // 100-byte slabs: each holds one of these responses with its key, so most start a new one.
    const store = new CompletedTransactions(4, 1 << 21, 100);
    const flow = new FakeFlow('u1', 'udp');
    const big = Buffer.alloc(250, 'x');
    for (let n = 0; n < 50; n++) store.addResponse(`k${n}`, flow, response(n), 1_000 + n);
    store.addResponse('big', flow, big, 2_000);
    expect(store.size).toBe(51);
    for (let n = 0; n < 50; n++) {
      const found = store.find(`k${n}`);
      expect(found !== undefined && 'flow' in found && found.flow).toBe(flow);
      expect(wireOf(found)?.equals(response(n))).toBe(true);
    }
    expect(wireOf(store.find('big'))?.equals(big)).toBe(true);
    expect(store.find('nothing')).toBeUndefined();
  });

  it('keeps challenges as their issue time beside responses, and finds each key it holds across growth', () => {
    const store = new CompletedTransactions(4);
    const flow = new FakeFlow('u1', 'udp');
    for (let i = 0; i < 5000; i++) {
      store.addChallenge(`z9hG4bK${i}|192.0.2.1:5060|REGISTER`, 1_000 + i, 40_000 + i);
      store.addResponse(`z9hG4bK${i}a|192.0.2.1:5060|REGISTER`, flow, response(i), 40_000 + i);
    }
    expect(store.size).toBe(10_000);
    for (let i = 0; i < 5000; i++) {
      expect(timeOf(store.find(`z9hG4bK${i}|192.0.2.1:5060|REGISTER`))).toBe(1_000 + i);
      expect(wireOf(store.find(`z9hG4bK${i}a|192.0.2.1:5060|REGISTER`))?.equals(response(i))).toBe(true);
    }
    expect(store.find('z9hG4bK5000|192.0.2.1:5060|REGISTER')).toBeUndefined();
    expect(store.find('z9hG4bK1|192.0.2.1:5060|MESSAGE')).toBeUndefined();
  });

  it('expires in arrival order, says when the next expires, and finds the rest after deletions and wrapping', () => {
    const store = new CompletedTransactions(8, 1 << 21, 256);
    const flow = new FakeFlow('u1', 'udp');
    for (let i = 0; i < 100; i++) {
      if (i % 2 === 0) store.addChallenge(`k${i}`, i, 1_000 + i * 10);
      else store.addResponse(`k${i}`, flow, response(i), 1_000 + i * 10);
    }
    expect(store.expire(1_000 + 49 * 10)).toBe(1_000 + 50 * 10);
    expect(store.size).toBe(50);
    for (let i = 0; i < 50; i++) expect(store.find(`k${i}`)).toBeUndefined();
    // Wrapping round the ring: new entries go into the room the expired ones left.
    for (let i = 100; i < 140; i++) store.addResponse(`k${i}`, flow, response(i), 1_000 + i * 10);
    for (let i = 50; i < 140; i++) {
      if (i % 2 === 0 && i < 100) expect(timeOf(store.find(`k${i}`))).toBe(i);
      else expect(wireOf(store.find(`k${i}`))?.equals(response(i))).toBe(true);
    }
    expect(store.expire(10_000)).toBeUndefined();
    expect(store.size).toBe(0);
    expect(store.find('k120')).toBeUndefined();
    // Usable again once emptied.
    store.addResponse('c', flow, response(4), 20_000);
    expect(wireOf(store.find('c'))?.equals(response(4))).toBe(true);
  });

  it('a key added again keeps its newest answer and expiry; the older entry no longer counts', () => {
    const store = new CompletedTransactions(8);
    const flow = new FakeFlow('u1', 'udp');
    store.addChallenge('a', 1, 100);
    store.addResponse('b', flow, response(2), 100);
    store.addResponse('a', flow, response(3), 200);
    expect(store.size).toBe(2);
    expect(wireOf(store.find('a'))?.equals(response(3))).toBe(true);
    expect(store.expire(150)).toBe(200);
    expect(wireOf(store.find('a'))?.equals(response(3))).toBe(true);
    expect(store.find('b')).toBeUndefined();
  });

  it('forgets the oldest past its bound instead of growing', () => {
    const store = new CompletedTransactions(4, 8);
    for (let i = 0; i < 20; i++) store.addChallenge(`k${i}`, i, 1_000);
    expect(store.size).toBe(8);
    expect(store.find('k11')).toBeUndefined();
    for (let i = 12; i < 20; i++) expect(timeOf(store.find(`k${i}`))).toBe(i);
  });

  it('uses an emptied slab again, only after the sweep that emptied it, and keeps each response intact', () => {
    // 100-byte slabs, a response and its key of 60-odd bytes: one per slab.
    const store = new CompletedTransactions(8, 1 << 21, 100);
    const flow = new FakeFlow('u1', 'udp');
    store.addResponse('a', flow, response(1), 100);
    store.addResponse('b', flow, response(2), 200);
    const slabA = wireOf(store.find('a'))?.buffer;
    const slabB = wireOf(store.find('b'))?.buffer;
    expect(slabA).not.toBe(slabB);
    // a expires: its slab rests through this sweep, so the next response gets a new one.
    expect(store.expire(150)).toBe(200);
    store.addResponse('c', flow, response(3), 300);
    expect(wireOf(store.find('c'))?.buffer).not.toBe(slabA);
    // After the next sweep a's slab is used again, and it now holds d's response.
    expect(store.expire(160)).toBe(200);
    store.addResponse('d', flow, response(4), 400);
    expect(wireOf(store.find('d'))?.buffer).toBe(slabA);
    expect(wireOf(store.find('d'))?.equals(response(4))).toBe(true);
    expect(wireOf(store.find('b'))?.equals(response(2))).toBe(true);
    expect(wireOf(store.find('c'))?.equals(response(3))).toBe(true);
  });

  it('gives a response only to the key it was kept for, even when another key hashes the same', () => {
    const store = new CompletedTransactions(8);
    const flow = new FakeFlow('u1', 'udp');
    store.addResponse('kept', flow, response(1), 100);
    // Force a collision: the index entry of 'kept' answers for another key with the same hash.
    const s = store as unknown as { hashHi: Uint32Array; hashLo: Uint32Array; index: Int32Array };
    const pos = 0;
    const other = 'another key';
    store.addChallenge(other, 5, 100);
    const otherPos = 1;
    // Rewrite 'kept' to carry the other key's hash, and drop the other key's entry from the index.
    const slotOf = (p: number) => {
      for (let i = 0; i < s.index.length; i += 2) if (s.index[i + 1] === p + 1) return i / 2;
      return -1;
    };
    const otherSlot = slotOf(otherPos);
    const keptSlot = slotOf(pos);
    s.index[2 * keptSlot] = s.index[2 * otherSlot];
    s.hashHi[pos] = s.hashHi[otherPos];
    s.hashLo[pos] = s.hashLo[otherPos];
    s.index[2 * otherSlot + 1] = 0;
    s.index[2 * otherSlot] = 0;
    // Move 'kept' into the other key's home slot so a probe for it finds 'kept' first.
    const home = s.index[2 * keptSlot] & ((s.index.length >> 1) - 1);
    if (home !== keptSlot) {
      s.index[2 * home] = s.index[2 * keptSlot];
      s.index[2 * home + 1] = s.index[2 * keptSlot + 1];
      s.index[2 * keptSlot] = 0;
      s.index[2 * keptSlot + 1] = 0;
    }
    expect(store.find(other)).toBeUndefined();
  });
});
