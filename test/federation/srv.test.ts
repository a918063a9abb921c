import { describe, expect, it } from 'vitest';
import { orderSrvTargets, resolveFederationEdge, type SrvResolver } from '../../src/federation/srv.js';

function resolverWith(
  records: Record<string, Array<{ name: string; port: number; priority: number; weight: number }>>,
): SrvResolver & {
  asked: string[];
} {
  const asked: string[] = [];
  return {
    asked,
    async resolveSrv(name) {
      asked.push(name);
      const r = records[name];
      if (!r) throw Object.assign(new Error(`queryNoData ${name}`), { code: 'ENODATA' });
      return r;
    },
  };
}

/** A deterministic sequence of "random" numbers in [0, 1). */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length];
}

describe('resolveFederationEdge', () => {
  it('looks up _sipfederationtls._tcp and orders by priority first', async () => {
    const resolver = resolverWith({
      '_sipfederationtls._tcp.partner.test': [
        { name: 'backup.partner.test', port: 5061, priority: 20, weight: 0 },
        { name: 'edge1.partner.test.', port: 5061, priority: 10, weight: 0 },
      ],
    });
    const targets = await resolveFederationEdge('Partner.Test', resolver);
    expect(resolver.asked).toEqual(['_sipfederationtls._tcp.partner.test']);
    expect(targets.map((t) => t.host)).toEqual(['edge1.partner.test', 'backup.partner.test']);
  });

  it('returns no targets when the partner publishes no record or the "." target', async () => {
    expect(await resolveFederationEdge('nothing.test', resolverWith({}))).toEqual([]);
    const dot = resolverWith({
      '_sipfederationtls._tcp.nofed.test': [{ name: '.', port: 0, priority: 0, weight: 0 }],
    });
    expect(await resolveFederationEdge('nofed.test', dot)).toEqual([]);
  });

  it('throws on DNS failures that are not "no record"', async () => {
    const broken: SrvResolver = {
      resolveSrv: async () => {
        throw Object.assign(new Error('timeout'), { code: 'ETIMEOUT' });
      },
    };
    await expect(resolveFederationEdge('partner.test', broken)).rejects.toThrow('timeout');
  });
});

describe('orderSrvTargets (RFC 2782 weighted selection)', () => {
  const group = [
    { host: 'a', port: 1, priority: 1, weight: 10 },
    { host: 'b', port: 1, priority: 1, weight: 30 },
    { host: 'z', port: 1, priority: 1, weight: 0 },
    { host: 'low', port: 1, priority: 5, weight: 100 },
  ];

  it('picks by running sum of weights within a priority', () => {
    // Selection order is [z(0), a(10), b(30)], running sums 0, 10, 40.
    // 0.5*40 = 20 -> b; then [z, a], sums 0, 10: 0.5*10 = 5 -> a; then z.
    expect(orderSrvTargets(group, sequence(0.5)).map((t) => t.host)).toEqual(['b', 'a', 'z', 'low']);
    // 0.1*40 = 4 -> a; then [z, b]: 0.1*30 = 3 -> b; then z.
    expect(orderSrvTargets(group, sequence(0.1)).map((t) => t.host)).toEqual(['a', 'b', 'z', 'low']);
    // A random 0 selects the weight-0 record first.
    expect(orderSrvTargets(group, sequence(0)).map((t) => t.host)[0]).toBe('z');
  });

  it('spreads load in proportion to weight', () => {
    let seed = 42;
    const lcg = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const firsts: Record<string, number> = {};
    for (let i = 0; i < 4000; i++) {
      const first = orderSrvTargets(group, lcg)[0].host;
      firsts[first] = (firsts[first] ?? 0) + 1;
    }
    expect(firsts.b / firsts.a).toBeGreaterThan(2.4);
    expect(firsts.b / firsts.a).toBeLessThan(3.6);
    expect(firsts.z ?? 0).toBeLessThan(10);
    expect(firsts.low).toBeUndefined();
  });

  it('keeps every record exactly once', () => {
    const out = orderSrvTargets(group, Math.random);
    expect(out.map((t) => t.host).sort()).toEqual(['a', 'b', 'low', 'z']);
  });
});
