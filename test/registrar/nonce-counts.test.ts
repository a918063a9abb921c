import { describe, expect, it } from 'vitest';
import { NonceCountWindow } from '../../src/registrar/nonce-counts.js';

describe('NonceCountWindow', () => {
  it('accepts each nonce count once, in order or slightly out of order', () => {
    const w = new NonceCountWindow();
    expect(w.use('n1', 1000, 1)).toBe(true);
    expect(w.use('n1', 1000, 1)).toBe(false);
    expect(w.use('n1', 1000, 3)).toBe(true);
    // 2 was skipped: a request sent in parallel that arrives late is still good, once.
    expect(w.use('n1', 1000, 2)).toBe(true);
    expect(w.use('n1', 1000, 2)).toBe(false);
    expect(w.use('n1', 1000, 3)).toBe(false);
    // Another nonce has its own counts.
    expect(w.use('n2', 1000, 1)).toBe(true);
  });

  it('refuses counts that fell out of the 32-wide window', () => {
    const w = new NonceCountWindow();
    expect(w.use('n', 1, 1)).toBe(true);
    expect(w.use('n', 1, 40)).toBe(true);
    expect(w.use('n', 1, 9)).toBe(true);
    expect(w.use('n', 1, 8)).toBe(false);
    expect(w.use('n', 1, 1)).toBe(false);
    expect(w.use('n', 1, 100)).toBe(true);
    expect(w.use('n', 1, 40)).toBe(false);
  });

  it('stays bounded and never re-accepts a forgotten nonce', () => {
    // Two generations of two: a full recent generation becomes the older one, and the
    // older one is forgotten whole.
    const w = new NonceCountWindow(4);
    expect(w.use('a', 10, 1)).toBe(true);
    expect(w.use('b', 20, 1)).toBe(true);
    expect(w.use('c', 30, 1)).toBe(true); // a and b are now the older generation
    expect(w.use('a', 10, 2)).toBe(true); // a, used again, goes with the recent ones
    expect(w.use('d', 40, 1)).toBe(true); // b's generation is forgotten
    expect(w.size).toBe(3);
    // b, or any nonce issued no later than b, might have been used: refused.
    expect(w.use('b', 20, 1)).toBe(false);
    expect(w.use('e', 15, 1)).toBe(false);
    // a is still known: its next count passes, a replayed one does not.
    expect(w.use('a', 10, 3)).toBe(true);
    expect(w.use('a', 10, 2)).toBe(false);
    // A nonce issued after the forgotten ones is new.
    expect(w.use('f', 50, 1)).toBe(true);
    for (let i = 0; i < 100; i++) {
      expect(w.use(`g${i}`, 100 + i, 1)).toBe(true);
      expect(w.size).toBeLessThanOrEqual(4);
    }
    // Each of them was used: none is accepted again, remembered or forgotten.
    for (let i = 0; i < 100; i++) expect(w.use(`g${i}`, 100 + i, 1)).toBe(false);
  });
});
