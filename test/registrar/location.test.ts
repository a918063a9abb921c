import { describe, expect, it } from 'vitest';
import { type Binding, LocationTable } from '../../src/registrar/location.js';

function binding(over: Partial<Binding>): Binding {
  return {
    aor: 'alice@example.com',
    contact: 'sip:alice@192.0.2.1:5060',
    callId: 'c1',
    cseq: 1,
    expiresAt: 10_000,
    q: 1,
    userAgent: '',
    serverId: 's1',
    path: [],
    flowOnly: false,
    ...over,
  };
}

describe('location table', () => {
  it('keeps several endpoints per user and signals sign-in and sign-out once', () => {
    let now = 0;
    const table = new LocationTable(() => now);
    const events: string[] = [];
    table.on('signedIn', (a) => events.push(`in ${a}`));
    table.on('signedOut', (a) => events.push(`out ${a}`));
    table.upsert(binding({ contact: 'sip:a@desk' }));
    table.upsert(binding({ contact: 'sip:a@phone' }));
    expect(table.lookup('alice@example.com').map((b) => b.contact)).toEqual(['sip:a@desk', 'sip:a@phone']);
    expect(table.registeredEndpoints).toBe(2);
    table.remove('alice@example.com', 'sip:a@desk');
    now = 20_000;
    expect(table.lookup('alice@example.com')).toEqual([]);
    expect(events).toEqual(['in alice@example.com', 'out alice@example.com']);
    expect(table.registeredEndpoints).toBe(0);
  });

  it('signs a user out: every binding goes, and only flows left empty and without a Path are idle', () => {
    const table = new LocationTable(() => 0);
    const changed: string[] = [];
    table.on('changed', (b, removed) => changed.push(`${removed ? '-' : '+'}${b.contact}`));
    table.upsert(binding({ contact: 'sip:a@desk', flowId: 'f-desk' }));
    table.upsert(binding({ contact: 'sip:a@phone', flowId: 'f-shared' }));
    table.upsert(binding({ aor: 'bob@example.com', contact: 'sip:b@phone', flowId: 'f-shared' }));
    table.upsert(binding({ contact: 'sip:a@edge', flowId: 'f-edge', path: ['<sip:edge.example.com;lr>'] }));
    changed.length = 0;
    const out = table.signOut('alice@example.com');
    expect(out.removed.map((b) => b.contact).sort()).toEqual(['sip:a@desk', 'sip:a@edge', 'sip:a@phone']);
    // The shared flow still carries bob; the edge's flow carries other users' traffic.
    expect(out.idleFlows).toEqual(['f-desk']);
    expect(table.lookup('alice@example.com')).toEqual([]);
    expect(table.lookup('bob@example.com')).toHaveLength(1);
    // A pool's mirror learns of each removal.
    expect(changed.sort()).toEqual(['-sip:a@desk', '-sip:a@edge', '-sip:a@phone']);
    expect(table.signOut('nobody@example.com')).toEqual({ removed: [], idleFlows: [] });
  });

  it('replaces the binding of the same instance and reg-id (RFC 5626)', () => {
    const table = new LocationTable(() => 0);
    table.upsert(binding({ contact: 'sip:x@a.invalid', instanceId: '<urn:uuid:1>', regId: 1 }));
    table.upsert(binding({ contact: 'sip:y@b.invalid', instanceId: '<urn:uuid:1>', regId: 1 }));
    expect(table.lookup('alice@example.com').map((b) => b.contact)).toEqual(['sip:y@b.invalid']);
  });

  it('drops flow-only bindings with their flow and keeps dialable ones', () => {
    const table = new LocationTable(() => 0);
    table.upsert(binding({ contact: 'sip:ws@x.invalid', flowId: 'w1', flowOnly: true }));
    table.upsert(binding({ contact: 'sip:alice@192.0.2.1:5060', flowId: 'w1', flowOnly: false }));
    const removed = table.flowClosed('w1');
    expect(removed.map((b) => b.contact)).toEqual(['sip:ws@x.invalid']);
    const left = table.lookup('alice@example.com');
    expect(left.map((b) => b.contact)).toEqual(['sip:alice@192.0.2.1:5060']);
    expect(left[0].flowId).toBeUndefined();
  });

  it('announces every change for the pool mirror', () => {
    const table = new LocationTable(() => 0);
    const changes: string[] = [];
    table.on('changed', (b, removed) => changes.push(`${removed ? '-' : '+'}${b.contact}`));
    table.upsert(binding({ contact: 'sip:a@1' }));
    table.upsert(binding({ contact: 'sip:a@1', cseq: 2 }));
    table.removeAll('alice@example.com');
    expect(changes).toEqual(['+sip:a@1', '+sip:a@1', '-sip:a@1']);
  });
});
