import { describe, expect, it } from 'vitest';
import { FlowTokens } from '../../src/proxy/flow-token.js';

describe('flow tokens', () => {
  const secret = Buffer.alloc(32, 7);
  it('round-trips a flow id signed by this server', () => {
    const tokens = new FlowTokens(secret, 'fe1');
    const t = tokens.token('w1a');
    expect(t).toMatch(/^f-w1a\.[A-Za-z0-9_-]{16}$/);
    expect(tokens.verify(t)).toBe('w1a');
  });

  it('refuses tokens of another server, another secret, or tampered ones', () => {
    const mine = new FlowTokens(secret, 'fe1');
    expect(mine.verify(new FlowTokens(secret, 'fe2').token('w1a'))).toBeUndefined();
    expect(mine.verify(new FlowTokens(Buffer.alloc(32, 8), 'fe1').token('w1a'))).toBeUndefined();
    const t = mine.token('w1a');
    expect(mine.verify(t.replace('w1a', 'w1b'))).toBeUndefined();
    expect(mine.verify('f-w1a')).toBeUndefined();
    expect(mine.verify('alice')).toBeUndefined();
    expect(mine.verify(undefined)).toBeUndefined();
  });
});
