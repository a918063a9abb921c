import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/ops/log.js';
import { type Binding, LocationTable } from '../../src/registrar/location.js';
import { LocationMirror } from '../../src/registrar/mirror.js';
import type { RegistrationRepository } from '../../src/store/registrations.js';

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

  it('sweeps expired bindings a slice at a time, round the table, through changes made between slices', () => {
    let now = 0;
    const table = new LocationTable(() => now);
    const out: string[] = [];
    table.on('changed', (b, removed, why) => {
      if (removed) out.push(`${b.aor} ${why}`);
    });
    const aor = (i: number) => `u${i}@example.com`;
    for (let i = 0; i < 10; i++)
      table.upsert(binding({ aor: aor(i), expiresAt: i % 2 === 0 ? 1_000 : 9_000 }));
    now = 5_000;
    // Four AORs a slice: the first slice sees u0-u3 and drops u0 and u2.
    expect(table.expireSome(4)).toBe(2);
    expect(out).toEqual([`${aor(0)} expired`, `${aor(2)} expired`]);
    // Between slices: an AOR ahead of the cursor goes, one is refreshed, a new one expired comes
    // (at the end, where the cursor still reaches it).
    table.remove(aor(5), 'sip:alice@192.0.2.1:5060');
    table.upsert(binding({ aor: aor(4), expiresAt: 9_000 }));
    table.upsert(binding({ aor: aor(10), expiresAt: 1_000 }));
    expect(table.expireSome(4)).toBe(2);
    expect(table.expireSome(100)).toBe(1);
    expect(out.slice(3)).toEqual([`${aor(6)} expired`, `${aor(8)} expired`, `${aor(10)} expired`]);
    expect(table.aorCount).toBe(5);
    // The end reached, the next slice starts round again.
    now = 10_000;
    expect(table.expireSome(2)).toBe(2);
    expect(table.expireSome(100)).toBe(3);
    expect(table.registeredEndpoints).toBe(0);
  });

  it('signs a user out: every binding goes, and only connections left empty are idle', () => {
    const table = new LocationTable(() => 0);
    const changed: string[] = [];
    table.on('changed', (b, removed) => changed.push(`${removed ? '-' : '+'}${b.contact}`));
    table.upsert(binding({ contact: 'sip:a@desk', flowId: 'f-desk', connectionId: 'f-desk' }));
    table.upsert(binding({ contact: 'sip:a@phone', flowId: 'f-shared', connectionId: 'f-shared' }));
    table.upsert(binding({ aor: 'bob@example.com', contact: 'sip:b@phone', connectionId: 'f-shared' }));
    // Behind the edge's Path: not tied to the edge's connection, which other users share.
    table.upsert(binding({ contact: 'sip:a@edge', path: ['<sip:f-1.x@edge.example.com;lr>'] }));
    changed.length = 0;
    const out = table.signOut('alice@example.com');
    expect(out.removed.map((b) => b.contact).sort()).toEqual(['sip:a@desk', 'sip:a@edge', 'sip:a@phone']);
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

  it('drops the bindings of a closed connection after the grace, unless re-registered meanwhile', () => {
    const pending: Array<() => void> = [];
    const table = new LocationTable(() => 0, {
      connectionGraceMs: 3000,
      schedule: (ms, fire) => {
        expect(ms).toBe(3000);
        pending.push(fire);
      },
    });
    const events: string[] = [];
    table.on('signedOut', (a) => events.push(`out ${a}`));
    table.on('lost', (bs, connection) =>
      events.push(`lost ${bs.map((b) => b.contact).join(',')} ${connection}`),
    );
    table.upsert(binding({ contact: 'sip:ws@x.invalid', flowId: 'w1', connectionId: 'w1', flowOnly: true }));
    table.upsert(binding({ contact: 'sip:alice@192.0.2.1:5060', connectionId: 'w1' }));
    // UDP: no connection, lives until it expires.
    table.upsert(binding({ aor: 'bob@example.com', contact: 'sip:bob@192.0.2.2:5060' }));
    table.upsert(
      binding({ aor: 'carol@example.com', contact: 'sip:carol@192.0.2.3:5060', connectionId: 't2' }),
    );
    expect(table.flowClosed('w1').map((b) => b.contact)).toEqual([
      'sip:ws@x.invalid',
      'sip:alice@192.0.2.1:5060',
    ]);
    expect(table.flowClosed('t2')).toHaveLength(1);
    expect(table.flowClosed('nothing')).toEqual([]);
    // Within the grace nothing has changed; carol reconnects and registers the same contact again.
    expect(table.registeredEndpoints).toBe(4);
    table.upsert(
      binding({ aor: 'carol@example.com', contact: 'sip:carol@192.0.2.3:5060', connectionId: 't3', cseq: 2 }),
    );
    for (const fire of pending.splice(0)) fire();
    expect(events).toEqual(['out alice@example.com', 'lost sip:ws@x.invalid,sip:alice@192.0.2.1:5060 w1']);
    expect(table.lookup('alice@example.com')).toEqual([]);
    expect(table.lookup('bob@example.com')).toHaveLength(1);
    expect(table.lookup('carol@example.com')[0].connectionId).toBe('t3');
    expect(table.registeredEndpoints).toBe(2);
  });

  it('drops at once without a grace', () => {
    const table = new LocationTable(() => 0);
    table.upsert(binding({ contact: 'sip:a@desk', connectionId: 't1' }));
    table.flowClosed('t1');
    expect(table.registeredEndpoints).toBe(0);
  });

  it('drops only the bindings behind the Path entry whose flow token the proxy names', () => {
    const table = new LocationTable(() => 0);
    const lost: Array<string | undefined> = [];
    table.on('lost', (bs, connection) => lost.push(...bs.map((b) => `${b.contact} ${connection}`)));
    table.upsert(
      binding({ contact: 'sip:a@laptop.invalid', path: ['<sip:f-one.mac@10.0.0.5:5070;transport=tcp;lr>'] }),
    );
    table.upsert(
      binding({ contact: 'sip:a@phone.invalid', path: ['<sip:f-two.mac@10.0.0.5:5070;transport=tcp;lr>'] }),
    );
    expect(table.pathFlowClosed('alice@example.com', 'f-one.mac').map((b) => b.contact)).toEqual([
      'sip:a@laptop.invalid',
    ]);
    expect(table.lookup('alice@example.com').map((b) => b.contact)).toEqual(['sip:a@phone.invalid']);
    expect(lost).toEqual(['sip:a@laptop.invalid undefined']);
    expect(table.pathFlowClosed('alice@example.com', 'f-unknown.mac')).toEqual([]);
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

  it("a pool member's mirror drops the rows of a lost connection's bindings once the grace has passed", async () => {
    const pending: Array<() => void> = [];
    const table = new LocationTable(() => 0, {
      connectionGraceMs: 2000,
      schedule: (_ms, fire) => pending.push(fire),
    });
    const writes: string[] = [];
    const repository = {
      upsertBindings: async (rows: Array<{ contact: string; path: string | null }>) => {
        for (const r of rows) writes.push(`+${r.contact} ${r.path ?? ''}`);
        return rows.length;
      },
      removeBindings: async (keys: Array<{ contact: string }>, serverId: string) => {
        for (const k of keys) writes.push(`-${k.contact} ${serverId}`);
        return keys.length;
      },
    } as unknown as RegistrationRepository;
    const mirror = new LocationMirror(
      table,
      repository,
      'fe1',
      (flowId) => `<sip:${flowId}@fe1;lr>`,
      silentLogger(),
    );
    table.upsert(
      binding({ contact: 'sip:a@desk.invalid', flowId: 't1', connectionId: 't1', flowOnly: true }),
    );
    await mirror.flush();
    expect(writes).toEqual(['+sip:a@desk.invalid <sip:t1@fe1;lr>']);
    table.flowClosed('t1');
    await mirror.flush();
    expect(writes).toHaveLength(1);
    for (const fire of pending.splice(0)) fire();
    await mirror.flush();
    expect(writes.at(-1)).toBe('-sip:a@desk.invalid fe1');
  });
});
