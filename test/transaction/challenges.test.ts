import { describe, expect, it } from 'vitest';
import { ChallengeMemory } from '../../src/transaction/challenges.js';

describe('ChallengeMemory (challenges over UDP kept for Timer J as their issue time)', () => {
  it('finds each key it holds, across growth, and none it does not', () => {
    const memory = new ChallengeMemory(4);
    for (let i = 0; i < 5000; i++) memory.add(`z9hG4bK${i}|192.0.2.1:5060|REGISTER`, 1_000 + i, 40_000 + i);
    expect(memory.size).toBe(5000);
    for (let i = 0; i < 5000; i++) expect(memory.find(`z9hG4bK${i}|192.0.2.1:5060|REGISTER`)).toBe(1_000 + i);
    expect(memory.find('z9hG4bK5000|192.0.2.1:5060|REGISTER')).toBeUndefined();
    expect(memory.find('z9hG4bK1|192.0.2.1:5060|MESSAGE')).toBeUndefined();
  });

  it('expires in arrival order, says when the next expires, and finds the rest after deletions', () => {
    const memory = new ChallengeMemory(8);
    for (let i = 0; i < 100; i++) memory.add(`k${i}`, i, 1_000 + i * 10);
    expect(memory.expire(1_000 + 49 * 10)).toBe(1_000 + 50 * 10);
    expect(memory.size).toBe(50);
    for (let i = 0; i < 50; i++) expect(memory.find(`k${i}`)).toBeUndefined();
    for (let i = 50; i < 100; i++) expect(memory.find(`k${i}`)).toBe(i);
    // Wrapping round the ring: new entries go into the room the expired ones left.
    for (let i = 100; i < 140; i++) memory.add(`k${i}`, i, 1_000 + i * 10);
    for (let i = 50; i < 140; i++) expect(memory.find(`k${i}`)).toBe(i);
    expect(memory.expire(10_000)).toBeUndefined();
    expect(memory.size).toBe(0);
    expect(memory.find('k120')).toBeUndefined();
  });

  it('a key added again keeps its newest time and expiry; the older entry no longer counts', () => {
    const memory = new ChallengeMemory(8);
    memory.add('a', 1, 100);
    memory.add('b', 2, 100);
    memory.add('a', 3, 200);
    expect(memory.size).toBe(2);
    expect(memory.find('a')).toBe(3);
    expect(memory.expire(150)).toBe(200);
    expect(memory.find('a')).toBe(3);
    expect(memory.find('b')).toBeUndefined();
  });

  it('forgets the oldest past its bound instead of growing', () => {
    const memory = new ChallengeMemory(4, 8);
    for (let i = 0; i < 20; i++) memory.add(`k${i}`, i, 1_000);
    expect(memory.size).toBe(8);
    expect(memory.find('k11')).toBeUndefined();
    for (let i = 12; i < 20; i++) expect(memory.find(`k${i}`)).toBe(i);
  });
});
