import { describe, expect, it } from 'vitest';
import {
  ClientPolicy,
  type ClientRule,
  compareVersions,
  productProblem,
  readUserAgent,
  refusalWarning,
  versionRangeProblem,
} from '../../src/clients/policy.js';

let nextId = 1;
function rule(
  position: number,
  product: string,
  versions: string,
  action: ClientRule['action'],
  extra: Partial<ClientRule> = {},
): ClientRule {
  return { id: nextId++, position, product, versions, action, reason: '', ...extra };
}

describe('client version rules', () => {
  it('compares dotted versions numerically', () => {
    expect(compareVersions([3, 10], [3, 9])).toBeGreaterThan(0);
    expect(compareVersions([4], [4, 0, 0])).toBe(0);
    expect(compareVersions([2, 1, 9], [2, 2])).toBeLessThan(0);
  });

  it('reads product and version the ways clients write them', () => {
    const policy = new ClientPolicy(
      [
        rule(1, 'JsSIP', '<3.10', 'upgrade', { upgradeUrl: 'https://x.example/chat' }),
        rule(2, 'baresip', '>=3 <4', 'allow'),
        rule(3, 'SIPp', '*', 'block', { reason: 'lab only' }),
      ],
      { action: 'block', reason: 'unsupported' },
    );
    expect(policy.decide('JsSIP 3.9.1')).toMatchObject({
      action: 'upgrade',
      product: 'JsSIP',
      version: '3.9.1',
    });
    expect(policy.decide('JsSIP 3.10.0').action).toBe('block'); // past rule 1, the default
    expect(policy.decide('baresip v3.16.0 (x86_64/linux)')).toMatchObject({
      action: 'allow',
      version: '3.16.0',
    });
    expect(policy.decide('baresip v4.0.0').action).toBe('block');
    expect(policy.decide('SIPp/3.7.1')).toMatchObject({ action: 'block', reason: 'lab only' });
    expect(policy.decide('sipp')).toMatchObject({ action: 'block', rule: { position: 3 } });
    // A product is a whole token: "JsSIPx" and "MyJsSIP" are other clients.
    expect(policy.decide('JsSIPx 1.0').rule).toBeUndefined();
    expect(policy.decide('MyJsSIP 1.0').rule).toBeUndefined();
    // A ranged rule needs a version to compare.
    expect(policy.decide('JsSIP').rule).toBeUndefined();
    expect(policy.decide(undefined).explanation).toMatch(/without User-Agent.*default -> block/);
  });

  it('lets the first matching rule decide, and caches per User-Agent', () => {
    const policy = new ClientPolicy([rule(2, 'JsSIP', '*', 'block'), rule(1, 'JsSIP', '=3.13.8', 'allow')], {
      action: 'allow',
      reason: '',
    });
    expect(policy.decide('JsSIP 3.13.8')).toMatchObject({ action: 'allow', rule: { position: 1 } });
    expect(policy.decide('JsSIP 3.13.7')).toMatchObject({ action: 'block', rule: { position: 2 } });
    expect(policy.decide('JsSIP 3.13.7')).toBe(policy.decide('JsSIP 3.13.7'));
    expect(policy.allowsAll).toBe(false);
    expect(ClientPolicy.allowAll().allowsAll).toBe(true);
  });

  it('names the reason and the upgrade URL in a quoted Warning (RFC 3261 20.43)', () => {
    const policy = new ClientPolicy(
      [
        rule(1, 'JsSIP', '<3.10', 'upgrade', {
          reason: 'loses "messages"',
          upgradeUrl: 'https://x.example/chat',
        }),
      ],
      { action: 'allow', reason: '' },
    );
    expect(refusalWarning(policy.decide('JsSIP 3.9.1'), 'example.com')).toBe(
      '399 example.com "JsSIP 3.9.1 is no longer allowed: loses \\"messages\\"; upgrade at https://x.example/chat"',
    );
  });

  it('checks products and ranges before they are stored', () => {
    expect(productProblem('JsSIP')).toBeUndefined();
    expect(productProblem('*')).toBeUndefined();
    expect(productProblem('Bad Name')).toMatch(/not a product token/);
    expect(versionRangeProblem('>=3.10 <4')).toBeUndefined();
    expect(versionRangeProblem('*')).toBeUndefined();
    expect(versionRangeProblem('~3')).toMatch(/not a version range/);
  });

  it('reads the first product of a User-Agent for reports', () => {
    expect(readUserAgent('JsSIP 3.13.8')).toEqual({ product: 'JsSIP', version: '3.13.8' });
    expect(readUserAgent('SIPp/3.7.1')).toEqual({ product: 'SIPp', version: '3.7.1' });
    expect(readUserAgent('')).toEqual({ product: '(none)', version: '' });
  });
});
