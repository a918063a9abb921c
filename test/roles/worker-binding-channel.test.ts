import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { BindingBatch, BindingPeer } from '../../src/registrar/worker-bindings.js';
import { type WorkerIpc, workerBindingChannel } from '../../src/roles/cluster.js';

const SECRET = 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6';

/** A main process in the test: remembers where each worker listens, tells the next one. */
class MainProcess {
  readonly ports: number[] = [];
  private readonly waiting: ((port: number) => void)[] = [];
  private readonly goneListeners = new Set<(from: string) => void>();

  ipc(secret = SECRET): WorkerIpc {
    const before = [...this.ports];
    return {
      secret,
      announce: (port) => {
        this.ports.push(port);
        for (const w of this.waiting.splice(0)) w(port);
      },
      onPeers: (listener) => {
        setImmediate(() => listener(before));
        return () => {};
      },
      onPeerGone: (listener) => {
        this.goneListeners.add(listener);
        return () => this.goneListeners.delete(listener);
      },
    };
  }

  /** A worker exited: the others hear its id. */
  workerGone(from: string): void {
    for (const l of this.goneListeners) l(from);
  }

  nextPort(): Promise<number> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

const stops: (() => void)[] = [];
afterEach(() => {
  for (const stop of stops.splice(0)) stop();
});

function opened(ipc: WorkerIpc, from?: string) {
  const batches: BindingBatch[] = [];
  const peers: BindingPeer[] = [];
  const gone: string[] = [];
  const said: string[] = [];
  const channel = workerBindingChannel(ipc, {
    warn: (_fields, message) => said.push(message),
    info: (_fields, message) => said.push(message),
  });
  const stop = channel.open({
    // As WorkerBindings does: each worker connected to is sent a snapshot (here one batch).
    onPeer: (p) => {
      peers.push(p);
      if (from) p.send({ ...batch(from), reset: true });
    },
    onBatch: (b) => batches.push(b),
    onGone: (f) => gone.push(f),
  });
  stops.push(stop);
  return { channel, batches, peers, gone, said, stop };
}

/** Two workers linked, each having heard the other's snapshot; the first one's port. */
async function linkedPair(main: MainProcess) {
  const first = opened(main.ipc(), 'w1');
  const port = await main.nextPort();
  const second = opened(main.ipc(), 'w2');
  await until(() => first.batches.length === 1 && second.batches.length === 1);
  return { first, second, port };
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(check()).toBe(true);
}

async function rawTo(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  // The worker resets what it drops: that is the answer these tests wait for.
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

async function closed(socket: Socket): Promise<boolean> {
  if (socket.destroyed) return true;
  const timeout = new Promise<false>((r) => setTimeout(() => r(false), 2_000));
  // events.once would reject on the reset's 'error': wait for 'close' alone.
  const close = new Promise<true>((r) => socket.once('close', () => r(true)));
  return Promise.race([close, timeout]);
}

const batch = (from: string): BindingBatch => ({
  from,
  set: [['sip:bob@parley.local', 'sip:bob@10.0.0.2:5060', 2_000_000_000_000, 1, [], null]],
  gone: [],
});

describe('the workers binding channel (loopback between workers)', () => {
  it('connects a worker to the one that listened before it, both ways', async () => {
    const main = new MainProcess();
    const first = opened(main.ipc());
    await main.nextPort();
    const second = opened(main.ipc());
    await until(() => first.peers.length === 1 && second.peers.length === 1);
    second.channel.send(batch('w2'));
    first.channel.send(batch('w1'));
    await until(() => first.batches.length === 1 && second.batches.length === 1);
    expect(first.batches[0].from).toBe('w2');
    expect(second.batches[0].from).toBe('w1');
  });

  it('drops a connection that does not open with the secret, and hears nothing from it', async () => {
    const main = new MainProcess();
    const worker = opened(main.ipc());
    const port = await main.nextPort();
    const wrong = await rawTo(port);
    wrong.write(`${'x'.repeat(SECRET.length)}\n${JSON.stringify(batch('intruder'))}\n`);
    expect(await closed(wrong)).toBe(true);
    const endless = await rawTo(port);
    endless.write('y'.repeat(100_000));
    expect(await closed(endless)).toBe(true);
    const blank = await rawTo(port);
    blank.write(`\n${JSON.stringify(batch('intruder'))}\n`);
    expect(await closed(blank)).toBe(true);
    expect(worker.batches).toEqual([]);
    expect(worker.peers).toEqual([]);
  });

  it('admits a connection with the secret; when it closes, its worker is kept until said gone', async () => {
    const main = new MainProcess();
    const worker = opened(main.ipc());
    const port = await main.nextPort();
    const peer = await rawTo(port);
    peer.write(`${SECRET}\n${JSON.stringify(batch('w9'))}\n`);
    await until(() => worker.batches.length === 1 && worker.peers.length === 1);
    peer.destroy();
    await new Promise((r) => setTimeout(r, 200));
    expect(worker.gone).toEqual([]);
    main.workerGone('w9');
    expect(worker.gone).toEqual(['w9']);
  });

  it('makes a link that dropped again: each side sends its snapshot again and nobody is forgotten', async () => {
    const main = new MainProcess();
    const { first, second, port } = await linkedPair(main);
    // The kernel resets the link itself (both workers live): ss -K closes the dialed socket.
    execFileSync('ss', ['-K', 'dst', '127.0.0.1', 'dport', '=', String(port)]);
    await until(() => second.said.some((m) => m.includes('dropped')));
    // Made again by the worker that dialed it: each side is sent the other's snapshot again.
    await until(() => first.batches.length === 2 && second.batches.length === 2);
    expect(first.batches[1]).toMatchObject({ from: 'w2', reset: true });
    expect(second.batches[1]).toMatchObject({ from: 'w1', reset: true });
    expect(second.said.some((m) => m.includes('back'))).toBe(true);
    expect([first.gone, second.gone]).toEqual([[], []]);
    // Changes flow both ways over the new link.
    second.channel.send(batch('w2'));
    first.channel.send(batch('w1'));
    await until(() => first.batches.length === 3 && second.batches.length === 3);
  });

  it('forgets a worker whose listener is gone (its link cannot be made again)', async () => {
    const main = new MainProcess();
    const { first, second } = await linkedPair(main);
    first.stop();
    await until(() => second.gone.length === 1);
    expect(second.gone).toEqual(['w1']);
  });

  it('forgets a worker the main process says is gone, and not before', async () => {
    const main = new MainProcess();
    const { first, second } = await linkedPair(main);
    second.stop();
    // The first worker's side of the link closed: it keeps w2's bindings until told.
    await new Promise((r) => setTimeout(r, 300));
    expect(first.gone).toEqual([]);
    main.workerGone('w2');
    expect(first.gone).toEqual(['w2']);
  });

  it('hears a batch far larger than one read whole (a sign-out of 50,000 users)', async () => {
    const main = new MainProcess();
    const worker = opened(main.ipc());
    const port = await main.nextPort();
    const peer = await rawTo(port);
    const big: BindingBatch = {
      from: 'w9',
      set: [],
      gone: Array.from({ length: 50_000 }, (_, i) => [`user${i}@parley.local`, `sip:user${i}@10.0.0.2:5060`]),
    };
    const text = `${SECRET}\n${JSON.stringify(big)}\n${JSON.stringify(batch('w9'))}\n`;
    // In pieces that cut lines anywhere, the secret's line included.
    for (let i = 0; i < text.length; i += 7_777) peer.write(text.slice(i, i + 7_777));
    await until(() => worker.batches.length === 2);
    expect(worker.batches[0].gone).toHaveLength(50_000);
    expect(worker.batches[0].gone[49_999]).toEqual(['user49999@parley.local', 'sip:user49999@10.0.0.2:5060']);
    expect(worker.batches[1]).toEqual(batch('w9'));
    peer.destroy();
  });

  it('refuses to start without a cluster secret', () => {
    expect(() => workerBindingChannel(new MainProcess().ipc(''))).toThrow(/cluster secret/);
  });
});
