import { describe, expect, it } from 'vitest';
import { RemoteBindingCache, type RemoteLookupSource } from '../../src/registrar/mirror.js';
import {
  REGISTRATIONS_CHANNEL,
  type RegistrationBinding,
  registrationPayloads,
} from '../../src/store/registrations.js';
import type { ChangeFeed, FeedEvents } from '../../src/store/sql.js';

const NOW = 1_900_000_000_000;

function row(aor: string, contact: string, serverId: string, expiresIn = 600): RegistrationBinding {
  return {
    aor,
    contact,
    instanceId: null,
    callId: `c-${contact}`,
    cseq: 1,
    expiresAt: new Date(NOW + expiresIn * 1000),
    q: 1,
    userAgent: 'UA',
    serverId,
    flowId: 'f1',
    path: '<sip:tok@10.0.0.2:5060;transport=tcp;lr>',
  };
}

/** The store's registrations table as the cache reads it, counting queries. */
class FakeRegistrations {
  rows: RegistrationBinding[] = [];
  queries = 0;
  /** When set, queries wait for it: a write can land while one is in flight. */
  gate?: Promise<void>;
  async listBindings(aor: string): Promise<RegistrationBinding[]> {
    this.queries++;
    const snapshot = this.rows.filter((r) => r.aor === aor && r.expiresAt.getTime() > NOW);
    await this.gate;
    return snapshot;
  }
}

/** A change feed driven by hand: payloads, connection lost and back. */
class FakeFeed implements ChangeFeed {
  onPayload?: (p: string) => void;
  events?: FeedEvents;
  async listen(channel: string, onPayload: (p: string) => void, events?: FeedEvents) {
    expect(channel).toBe(REGISTRATIONS_CHANNEL);
    this.onPayload = onPayload;
    this.events = events;
    return async () => {
      this.onPayload = undefined;
    };
  }
  async notify(): Promise<void> {}
  changed(...aors: string[]): void {
    for (const p of registrationPayloads(aors)) this.onPayload?.(p);
  }
}

async function setup(opts: { maxEntries?: number } = {}) {
  const repo = new FakeRegistrations();
  const feed = new FakeFeed();
  const sources: RemoteLookupSource[] = [];
  let now = NOW;
  const cache = new RemoteBindingCache(repo, 'fe1', {
    ...opts,
    onLookup: (s) => sources.push(s),
    now: () => now,
  });
  await cache.follow(feed);
  return { repo, feed, cache, sources, advance: (ms: number) => (now += ms) };
}

const contacts = async (v: ReturnType<RemoteBindingCache['lookup']>) => (await v).map((b) => b.contact);

describe('RemoteBindingCache: other front-ends bindings kept current by LISTEN/NOTIFY', () => {
  it('asks the store once per AOR, then answers from memory without a promise', async () => {
    const { repo, cache, sources } = await setup();
    repo.rows.push(row('bob@x', 'sip:bob@1', 'fe2'), row('bob@x', 'sip:bob@2', 'fe1'));
    expect(await contacts(cache.lookup('bob@x'))).toEqual(['sip:bob@1']);
    for (let i = 0; i < 100; i++) {
      const hit = cache.lookup('bob@x');
      expect(Array.isArray(hit)).toBe(true);
      expect(await contacts(hit)).toEqual(['sip:bob@1']);
    }
    expect(repo.queries).toBe(1);
    expect(sources.filter((s) => s === 'store')).toHaveLength(1);
    expect(sources.filter((s) => s === 'cache')).toHaveLength(100);
    // The remote binding routes through its front-end's Path.
    expect((await cache.lookup('bob@x'))[0].path).toEqual(['<sip:tok@10.0.0.2:5060;transport=tcp;lr>']);
  });

  it('remembers that a user has no bindings elsewhere, until one is announced', async () => {
    const { repo, feed, cache } = await setup();
    expect(await cache.lookup('carol@x')).toEqual([]);
    expect(await cache.lookup('carol@x')).toEqual([]);
    expect(repo.queries).toBe(1);
    repo.rows.push(row('carol@x', 'sip:carol@9', 'fe3'));
    feed.changed('dave@x', 'carol@x');
    expect(await contacts(cache.lookup('carol@x'))).toEqual(['sip:carol@9']);
    expect(repo.queries).toBe(2);
    // Signed out on fe3: announced, gone here.
    repo.rows = [];
    feed.changed('carol@x');
    expect(await cache.lookup('carol@x')).toEqual([]);
    expect(repo.queries).toBe(3);
  });

  it('shares one query between concurrent lookups', async () => {
    const { repo, cache } = await setup();
    repo.rows.push(row('bob@x', 'sip:bob@1', 'fe2'));
    const all = await Promise.all([cache.lookup('bob@x'), cache.lookup('bob@x'), cache.lookup('bob@x')]);
    expect(all.map((a) => a.length)).toEqual([1, 1, 1]);
    expect(repo.queries).toBe(1);
  });

  it('does not keep an answer a change overtook while the query ran', async () => {
    const { repo, feed, cache } = await setup();
    repo.rows.push(row('bob@x', 'sip:old', 'fe2'));
    let open!: () => void;
    repo.gate = new Promise((r) => {
      open = r;
    });
    const first = cache.lookup('bob@x');
    // bob registers a new contact while the query (which read the old state) is in flight.
    repo.rows = [row('bob@x', 'sip:new', 'fe2')];
    feed.changed('bob@x');
    open();
    expect(await contacts(first)).toEqual(['sip:old']);
    repo.gate = undefined;
    expect(await contacts(cache.lookup('bob@x'))).toEqual(['sip:new']);
    expect(repo.queries).toBe(2);
  });

  it('leaves expired bindings out without asking the store', async () => {
    const { repo, cache, advance } = await setup();
    repo.rows.push(row('bob@x', 'sip:short', 'fe2', 30), row('bob@x', 'sip:long', 'fe2', 600));
    expect(await contacts(cache.lookup('bob@x'))).toEqual(['sip:short', 'sip:long']);
    advance(31_000);
    expect(await contacts(cache.lookup('bob@x'))).toEqual(['sip:long']);
    expect(repo.queries).toBe(1);
  });

  it('an empty payload (a front-end dropped all its bindings) forgets everything', async () => {
    const { repo, feed, cache } = await setup();
    repo.rows.push(row('bob@x', 'sip:bob@1', 'fe2'), row('ann@x', 'sip:ann@1', 'fe2'));
    await cache.lookup('bob@x');
    await cache.lookup('ann@x');
    repo.rows = [];
    feed.onPayload?.('');
    expect(await cache.lookup('bob@x')).toEqual([]);
    expect(await cache.lookup('ann@x')).toEqual([]);
    expect(repo.queries).toBe(4);
  });

  it('asks the store on every lookup while the LISTEN connection is down, and starts empty when it is back', async () => {
    const { repo, feed, cache } = await setup();
    repo.rows.push(row('bob@x', 'sip:bob@1', 'fe2'));
    await cache.lookup('bob@x');
    feed.events?.lost?.();
    // A change announced now would be lost: nothing is trusted or kept.
    repo.rows = [row('bob@x', 'sip:bob@2', 'fe2')];
    expect(await contacts(cache.lookup('bob@x'))).toEqual(['sip:bob@2']);
    expect(await contacts(cache.lookup('bob@x'))).toEqual(['sip:bob@2']);
    expect(repo.queries).toBe(3);
    expect(cache.size).toBe(0);
    feed.events?.resumed?.();
    expect(await contacts(cache.lookup('bob@x'))).toEqual(['sip:bob@2']);
    expect(await contacts(cache.lookup('bob@x'))).toEqual(['sip:bob@2']);
    expect(repo.queries).toBe(4);
  });

  it('holds at most maxEntries AORs, dropping the oldest', async () => {
    const { repo, cache } = await setup({ maxEntries: 2 });
    for (const aor of ['a@x', 'b@x', 'c@x']) await cache.lookup(aor);
    expect(cache.size).toBe(2);
    await cache.lookup('c@x');
    await cache.lookup('b@x');
    expect(repo.queries).toBe(3);
    await cache.lookup('a@x');
    expect(repo.queries).toBe(4);
  });
});
