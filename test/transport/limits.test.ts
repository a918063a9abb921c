import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConnectionEventLog,
  ConnectionLimiter,
  DESCRIPTOR_HEADROOM,
  effectiveMaxConnections,
  forgetOldest,
} from '../../src/transport/limits.js';

describe('ConnectionLimiter', () => {
  it('refuses past the per-address limit and admits again after a release', () => {
    const limiter = new ConnectionLimiter(2, 100);
    const a = limiter.admit('192.0.2.1');
    const b = limiter.admit('192.0.2.1');
    expect(typeof a).toBe('object');
    expect(typeof b).toBe('object');
    expect(limiter.admit('192.0.2.1')).toBe('per_address');
    expect(typeof limiter.admit('192.0.2.2')).toBe('object');
    if (typeof a === 'object') {
      a.release();
      a.release();
    }
    expect(limiter.addressCount('192.0.2.1')).toBe(1);
    expect(typeof limiter.admit('192.0.2.1')).toBe('object');
    expect(limiter.count).toBe(3);
  });

  it('refuses past the global limit, trusted proxies included', () => {
    const limiter = new ConnectionLimiter(10, 3, ['10.0.0.0/8']);
    for (let i = 0; i < 3; i++) expect(typeof limiter.admit('10.1.2.3')).toBe('object');
    expect(limiter.admit('10.1.2.3')).toBe('global');
    expect(limiter.admit('192.0.2.1')).toBe('global');
  });

  it('exempts trusted proxies (addresses and CIDR blocks) from the per-address limit', () => {
    const limiter = new ConnectionLimiter(1, 100, ['10.0.0.0/8', '2001:db8::1']);
    for (let i = 0; i < 5; i++) expect(typeof limiter.admit('10.9.8.7')).toBe('object');
    for (let i = 0; i < 5; i++) expect(typeof limiter.admit('2001:db8::1')).toBe('object');
    expect(limiter.isTrusted('11.0.0.1')).toBe(false);
    expect(limiter.isTrusted('not an address')).toBe(false);
    expect(limiter.addressCount('10.9.8.7')).toBe(0);
  });

  it('counts a client behind a proxy against its own address only', () => {
    const limiter = new ConnectionLimiter(1, 100, ['10.0.0.1']);
    limiter.admit('10.0.0.1');
    const client = limiter.admitBehindProxy('198.51.100.7');
    expect(typeof client).toBe('object');
    expect(limiter.admitBehindProxy('198.51.100.7')).toBe('per_address');
    expect(limiter.count).toBe(1);
  });

  it('rejects malformed trusted-proxy entries', () => {
    expect(() => new ConnectionLimiter(1, 1, ['10.0.0.0/33'])).toThrow(/prefix/);
    expect(() => new ConnectionLimiter(1, 1, ['lb.example.com'])).toThrow(/not an address/);
  });
});

describe('effectiveMaxConnections', () => {
  it('stays the headroom below the descriptor soft limit', () => {
    expect(effectiveMaxConnections(undefined, 20_000)).toBe(20_000 - DESCRIPTOR_HEADROOM);
    expect(effectiveMaxConnections(50_000, 20_000)).toBe(20_000 - DESCRIPTOR_HEADROOM);
    expect(effectiveMaxConnections(500, 20_000)).toBe(500);
    expect(effectiveMaxConnections(500, undefined)).toBe(500);
    expect(effectiveMaxConnections(undefined, undefined)).toBe(10_000);
  });
});

describe('ConnectionEventLog', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function capture() {
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    return { lines, log };
  }

  it('logs the first refusal at once and sums a flood into one line per reason and window', () => {
    vi.useFakeTimers();
    const { lines, log } = capture();
    const events = new ConnectionEventLog(log, 10_000);
    events.report('per_address', '192.0.2.1');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, reason: 'per_address', address: '192.0.2.1' });
    for (let i = 0; i < 5000; i++) events.report('per_address', i % 2 ? '192.0.2.1' : '192.0.2.2');
    events.report('global', '192.0.2.3');
    expect(lines).toHaveLength(1);
    vi.advanceTimersByTime(10_000);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatchObject({ reason: 'per_address', count: 5000, addresses: 2 });
    expect(lines[1].top).toEqual({ '192.0.2.1': 2500, '192.0.2.2': 2500 });
    expect(lines[2]).toMatchObject({ reason: 'global', count: 1 });
    // A quiet window closes the period: the next refusal is logged at once again.
    vi.advanceTimersByTime(10_000);
    events.report('global', '192.0.2.4');
    expect(lines).toHaveLength(4);
  });

  it('logs timeouts at info, refusals at warn', () => {
    const { lines, log } = capture();
    new ConnectionEventLog(log).report('idle_timeout', '192.0.2.1');
    expect(lines[0]).toMatchObject({ level: 30, reason: 'idle_timeout' });
  });

  it('bounds the addresses it remembers in a flood', () => {
    vi.useFakeTimers();
    const { lines, log } = capture();
    const events = new ConnectionEventLog(log, 1000, 10);
    events.report('per_address', 'first');
    for (let i = 0; i < 100; i++) events.report('per_address', `198.51.100.${i}`);
    vi.advanceTimersByTime(1000);
    expect(lines[1]).toMatchObject({ count: 100, addresses: 11 });
    expect((lines[1].top as Record<string, number>).other).toBe(90);
  });
});

describe('forgetOldest', () => {
  it('leaves a map at or under its limit alone', () => {
    const map = new Map([...Array(16).keys()].map((i) => [i, i]));
    forgetOldest(map, 16);
    expect([...map.keys()]).toEqual([...Array(16).keys()]);
  });

  it('forgets the oldest eighth once over, newest kept, in order', () => {
    const map = new Map<number, number>();
    for (let i = 0; i < 17; i++) map.set(i, i);
    forgetOldest(map, 16);
    // One over the limit plus an eighth of it (2): the three oldest go.
    expect([...map.keys()]).toEqual([...Array(14).keys()].map((i) => i + 3));
    // Under the limit again: the next insertions forget nothing until it is passed.
    for (let i = 17; i < 19; i++) map.set(i, i);
    forgetOldest(map, 16);
    expect(map.size).toBe(16);
    expect(map.has(3)).toBe(true);
  });

  it('with a limit under eight forgets one at a time', () => {
    const map = new Map([
      ['a', 1],
      ['b', 2],
      ['c', 3],
    ]);
    forgetOldest(map, 2);
    expect([...map.keys()]).toEqual(['b', 'c']);
  });
});
