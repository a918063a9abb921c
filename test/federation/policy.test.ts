import { describe, expect, it } from 'vitest';
import { FederationError, FederationPolicy, normalizeFederationDomain } from '../../src/federation/policy.js';
import type { FederationEntry } from '../../src/store/federation.js';

const at = new Date('2030-01-01T00:00:00Z');
const entry = (domain: string, action: FederationEntry['action'], edgeFqdn?: string): FederationEntry => ({
  domain,
  action,
  note: '',
  updatedAt: at,
  ...(edgeFqdn ? { edgeFqdn } : {}),
});

describe('federation domains', () => {
  it('normalizes case and the root dot, refuses what is not a DNS name', () => {
    expect(normalizeFederationDomain(' Partner.Example. ')).toBe('partner.example');
    for (const bad of [
      'localhost',
      'partner..example',
      '-a.example',
      'a_b.example',
      '*.example',
      'a.example/x',
      '',
    ])
      expect(() => normalizeFederationDomain(bad)).toThrow(FederationError);
  });
});

describe('federation policy', () => {
  const policy = new FederationPolicy(
    [
      entry('pinned.example', 'allow', 'sip.pinned.example'),
      entry('srv.example', 'allow'),
      entry('spam.example', 'block'),
      entry('ch.example', 'clearinghouse'),
    ],
    ['parley.test'],
  );

  it('is closed for any domain not allowed, and blocked wins', () => {
    expect(policy.inbound('unknown.example', ['sip.unknown.example'])).toMatchObject({
      ok: false,
      refusal: 'not_allowed',
      status: 403,
    });
    expect(policy.inbound('spam.example', ['ch.example'])).toMatchObject({ ok: false, refusal: 'blocked' });
    expect(policy.outbound('spam.example')).toMatchObject({ kind: 'refused', refusal: 'blocked' });
    expect(policy.outbound('unknown.example')).toMatchObject({ kind: 'refused', refusal: 'not_allowed' });
    expect(policy.inbound('parley.test', ['edge.parley.test'])).toMatchObject({
      ok: false,
      refusal: 'own_domain',
    });
  });

  it('accepts a pinned partner only from a certificate naming its edge', () => {
    expect(policy.inbound('pinned.example', ['sip.pinned.example'])).toEqual({ ok: true, via: 'direct' });
    expect(policy.inbound('Pinned.Example', ['SIP.pinned.example'])).toEqual({ ok: true, via: 'direct' });
    expect(policy.inbound('pinned.example', ['impostor.example'], ['impostor.example'])).toMatchObject({
      ok: false,
      refusal: 'certificate',
    });
  });

  it('checks an unpinned partner against its SRV targets, or the clearinghouse relaying for it', () => {
    expect(policy.inbound('srv.example', ['edge1.srv.example'], ['edge1.srv.example'])).toEqual({
      ok: true,
      via: 'direct',
    });
    expect(policy.inbound('srv.example', ['edge1.srv.example'], [])).toMatchObject({
      refusal: 'certificate',
    });
    expect(policy.inbound('srv.example', ['ch.example'])).toEqual({ ok: true, via: 'clearinghouse' });
  });

  it('routes to the pinned edge, else SRV with the clearinghouse as fallback', () => {
    expect(policy.outbound('pinned.example')).toEqual({ kind: 'direct', edgeFqdn: 'sip.pinned.example' });
    expect(policy.outbound('srv.example')).toEqual({ kind: 'direct', fallback: 'ch.example' });
    expect(new FederationPolicy([entry('srv.example', 'allow')]).outbound('srv.example')).toEqual({
      kind: 'direct',
    });
  });

  it('describes itself as closed by default', () => {
    expect(policy.describe()).toEqual({
      default: 'closed',
      allowed: [
        { domain: 'pinned.example', edge: 'sip.pinned.example', note: '' },
        { domain: 'srv.example', edge: 'SRV _sipfederationtls._tcp', note: '' },
      ],
      blocked: [{ domain: 'spam.example', note: '' }],
      clearinghouse: 'ch.example',
    });
  });
});
