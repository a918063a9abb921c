import { describe, expect, it } from 'vitest';
import { type Binding, LocationTable } from '../../src/registrar/location.js';
import {
  type BindingBatch,
  type BindingChannel,
  FLUSH_MS,
  WorkerBindings,
} from '../../src/registrar/worker-bindings.js';

const NOW = 1_900_000_000_000;

type Handlers = Parameters<BindingChannel['open']>[0];

/**
 * The workers' connections in one process: a worker that opens is connected to every one
 * that opened before (each side gets the other as a peer); what a worker sends reaches its
 * peers asynchronously, as over a socket; a worker that dies is gone for the others.
 */
class Exchange {
  private readonly open = new Map<number, Handlers>();
  private readonly ids = new Map<number, string>();

  private deliver(from: number, to: number, batch: BindingBatch): void {
    this.ids.set(from, batch.from);
    const copy = JSON.parse(JSON.stringify(batch)) as BindingBatch;
    setImmediate(() => this.open.get(to)?.onBatch(copy));
  }

  channel(index: number): BindingChannel {
    return {
      send: (batch) => {
        for (const other of this.open.keys()) if (other !== index) this.deliver(index, other, batch);
      },
      open: (handlers) => {
        for (const [other, theirs] of this.open) {
          setImmediate(() => {
            handlers.onPeer({ send: (batch) => this.deliver(index, other, batch) });
            theirs.onPeer({ send: (batch) => this.deliver(other, index, batch) });
          });
        }
        this.open.set(index, handlers);
        return () => this.open.delete(index);
      },
    };
  }

  /** A worker died: its connections close, and the others forget it. */
  died(index: number): void {
    this.open.delete(index);
    const from = this.ids.get(index) ?? '';
    for (const h of this.open.values()) setImmediate(() => h.onGone(from));
  }
}

function binding(aor: string, contact: string, serverId: string, extra: Partial<Binding> = {}): Binding {
  return {
    aor,
    contact,
    callId: `c-${contact}`,
    cseq: 1,
    expiresAt: NOW + 600_000,
    q: 1,
    userAgent: 'UA',
    serverId,
    path: [],
    flowOnly: false,
    ...extra,
  };
}

/** Long enough for a worker's changes to go out (FLUSH_MS) and reach the others. */
const turns = async (n = 3) => {
  await new Promise((r) => setTimeout(r, FLUSH_MS + 5));
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

function worker(exchange: Exchange, index: number, now = () => NOW) {
  const location = new LocationTable(now);
  const shared = new WorkerBindings(
    location,
    exchange.channel(index),
    `s-w${index}`,
    (flowId) => `<sip:token-${flowId}@127.0.0.1:${9000 + index};transport=tcp;lr>`,
    now,
  );
  return { location, shared };
}

/** Two workers on one exchange, both hearing. */
function startedPair(now = () => NOW) {
  const x = new Exchange();
  const one = worker(x, 1, now);
  const two = worker(x, 2, now);
  one.shared.start();
  two.shared.start();
  return { one, two };
}

describe('WorkerBindings', () => {
  it('counts each user once over the workers, one on two workers on the first', async () => {
    const { one, two } = startedPair();
    one.location.upsert(binding('alice@d', 'sip:alice@10.0.0.1:5070', 's-w1'));
    two.location.upsert(binding('alice@d', 'sip:alice@10.0.0.9:5070', 's-w2'));
    two.location.upsert(binding('bob@d', 'sip:bob@10.0.0.2:5070', 's-w2'));
    await turns();
    expect([one.shared.usersCountedHere(), two.shared.usersCountedHere()]).toEqual([1, 1]);
    one.location.remove('alice@d', 'sip:alice@10.0.0.1:5070');
    await turns();
    expect([one.shared.usersCountedHere(), two.shared.usersCountedHere()]).toEqual([0, 2]);
  });

  it("shows each worker the other's bindings, with the owner's flow route first, and their removal", async () => {
    const { one, two } = startedPair();
    one.location.upsert(
      binding('alice@d', 'sip:alice@10.0.0.1:5070', 's-w1', { flowId: 'f1', path: ['<sip:edge;lr>'] }),
    );
    two.location.upsert(binding('bob@d', 'sip:bob@10.0.0.2:5070', 's-w2'));
    expect(two.shared.remote('alice@d')).toEqual([]);
    await turns();
    const seen = two.shared.remote('alice@d');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      contact: 'sip:alice@10.0.0.1:5070',
      serverId: 's-w1',
      path: ['<sip:token-f1@127.0.0.1:9001;transport=tcp;lr>', '<sip:edge;lr>'],
      flowOnly: false,
    });
    expect(seen[0].flowId).toBeUndefined();
    // A binding reached at its contact (no flow of ours) is dialled there by any worker.
    expect(one.shared.remote('bob@d')[0]).toMatchObject({ contact: 'sip:bob@10.0.0.2:5070', path: [] });
    expect(one.shared.remote('alice@d')).toEqual([]);

    // Signed in on worker 2 only: signed out everywhere only once that binding goes too.
    expect(await one.shared.signedOutEverywhere(['alice@d', 'bob@d', 'carol@d'])).toEqual(['carol@d']);
    two.location.remove('bob@d', 'sip:bob@10.0.0.2:5070');
    await turns();
    expect(one.shared.remote('bob@d')).toEqual([]);
    expect(await one.shared.signedOutEverywhere(['bob@d'])).toEqual(['bob@d']);
  });

  it('sends one batch per turn, the last state of each binding', async () => {
    const x = new Exchange();
    const sent: BindingBatch[] = [];
    const inner = x.channel(1);
    const location = new LocationTable(() => NOW);
    const shared = new WorkerBindings(
      location,
      {
        send: (b) => {
          sent.push(b);
          inner.send(b);
        },
        open: inner.open,
      },
      's-w1',
      (f) => f,
      () => NOW,
    );
    shared.start();
    sent.length = 0;
    for (let i = 0; i < 100; i++) location.upsert(binding(`u${i}@d`, `sip:u${i}@h`, 's-w1', { cseq: 1 }));
    location.upsert(binding('u0@d', 'sip:u0@h', 's-w1', { expiresAt: NOW + 900_000 }));
    location.remove('u1@d', 'sip:u1@h');
    await turns();
    expect(sent).toHaveLength(1);
    expect(sent[0].set).toHaveLength(99);
    expect(sent[0].set.find((w) => w[0] === 'u0@d')?.[2]).toBe(NOW + 900_000);
    expect(sent[0].gone).toEqual([['u1@d', 'sip:u1@h']]);
  });

  it("gives a worker that (re)starts the others' bindings, and forgets a worker that died", async () => {
    const x = new Exchange();
    const one = worker(x, 1);
    one.shared.start();
    for (let i = 0; i < 12_000; i++) one.location.upsert(binding(`u${i}@d`, `sip:u${i}@h`, 's-w1'));
    await turns();
    // Worker 2 starts late: a snapshot of worker 1's 12,000 bindings (in chunks) reaches it.
    const two = worker(x, 2);
    two.location.upsert(binding('bob@d', 'sip:bob@h', 's-w2'));
    two.shared.start();
    await turns(5);
    expect(two.shared.remoteCount).toBe(12_000);
    expect(two.shared.remote('u11999@d')).toHaveLength(1);
    // ...and its own binding, made before it started hearing, reaches worker 1.
    expect(one.shared.remote('bob@d')).toHaveLength(1);

    // Worker 2 dies: worker 1 forgets bob; worker 2's successor starts empty and bob comes back
    // when his client registers again.
    x.died(2);
    await turns();
    expect(one.shared.remote('bob@d')).toEqual([]);
    expect(await one.shared.signedOutEverywhere(['bob@d'])).toEqual(['bob@d']);
    const again = worker(x, 2);
    again.shared.start();
    await turns(5);
    expect(again.shared.remoteCount).toBe(12_000);
    again.location.upsert(binding('bob@d', 'sip:bob@h', 's-w2'));
    await turns();
    expect(one.shared.remote('bob@d')).toHaveLength(1);

    // A worker that stops says so itself.
    await one.shared.stop();
    await turns();
    expect(again.shared.remoteCount).toBe(0);
  });

  it('leaves expired bindings out, as the location table does', async () => {
    let now = NOW;
    const { one, two } = startedPair(() => now);
    one.location.upsert(binding('alice@d', 'sip:a1@h', 's-w1', { expiresAt: NOW + 1_000 }));
    one.location.upsert(binding('alice@d', 'sip:a2@h', 's-w1', { expiresAt: NOW + 60_000 }));
    await turns();
    expect(two.shared.remote('alice@d')).toHaveLength(2);
    now = NOW + 2_000;
    expect(two.shared.remote('alice@d').map((b) => b.contact)).toEqual(['sip:a2@h']);
  });

  it("keeps a lookup's answer as it was when the owner changes the AOR's bindings", async () => {
    const { one, two } = startedPair();
    one.location.upsert(binding('alice@d', 'sip:a1@h', 's-w1'));
    await turns();
    const answer = two.shared.remote('alice@d');
    one.location.upsert(binding('alice@d', 'sip:a2@h', 's-w1'));
    one.location.remove('alice@d', 'sip:a1@h');
    await turns();
    expect(answer.map((b) => b.contact)).toEqual(['sip:a1@h']);
    expect(two.shared.remote('alice@d').map((b) => b.contact)).toEqual(['sip:a2@h']);
  });
});
