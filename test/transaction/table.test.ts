import { describe, expect, it } from 'vitest';
import { TransactionTable } from '../../src/transaction/table.js';

describe('TransactionTable', () => {
  it('behaves as a map of its transactions, its anchors never showing', () => {
    const table = new TransactionTable<{ id: number }>();
    expect(table.size).toBe(0);
    expect(table.get('\u00000')).toBeUndefined();
    expect(table.list()).toEqual([]);
    const a = { id: 1 };
    const b = { id: 2 };
    table.set('z9hG4bKa|h:5060|REGISTER', a);
    table.set('z9hG4bKb|h:5060|REGISTER', b);
    expect(table.size).toBe(2);
    expect(table.get('z9hG4bKa|h:5060|REGISTER')).toBe(a);
    expect(table.list()).toEqual([a, b]);
    table.delete('z9hG4bKa|h:5060|REGISTER');
    table.delete('\u00000');
    expect(table.size).toBe(1);
    expect(table.get('z9hG4bKa|h:5060|REGISTER')).toBeUndefined();
    table.delete('z9hG4bKb|h:5060|REGISTER');
    expect(table.size).toBe(0);
    expect(table.list()).toEqual([]);
    // Emptied and filled again, as every challenged REGISTER does.
    table.set('z9hG4bKc|h:5060|REGISTER', a);
    expect(table.list()).toEqual([a]);
    expect(() => table.set('\u00000', b)).toThrow(/never starts with NUL/);
    expect(table.size).toBe(1);
  });
});
