import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SocketFlow } from '../../src/transport/flow.js';

describe('SocketFlow write queue', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });

  /** A loopback connection: the server's end (what a SocketFlow wraps) and the peer's. */
  async function connectedPair(): Promise<{ peer: Socket; socket: Socket }> {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    const peer = connect(port, '127.0.0.1');
    cleanups.push(() => {
      peer.destroy();
      server.close();
    });
    const [socket] = await accepted;
    return { peer, socket };
  }

  it('closes a connection whose peer stops reading once the queue passes its bound, and sends nothing more', async () => {
    const { peer, socket } = await connectedPair();
    // The peer never reads: the kernel buffers fill, then Node's queue grows.
    peer.pause();
    // As the transport layer does: a socket's error is logged, the close is what counts.
    const errors: string[] = [];
    socket.on('error', (err) => errors.push(err.message));
    const closed = new Promise((resolve) => socket.once('close', resolve));
    const flow = new SocketFlow('tcp', socket, undefined, 1024 * 1024);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let sent = 0;
    while (flow.send(chunk)) {
      sent++;
      if (sent > 10_000) break;
      // Let the kernel take what it will, as the event loop would between requests.
      if (sent % 16 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(sent).toBeLessThan(10_000);
    expect(flow.closed).toBe(true);
    expect(flow.send(chunk)).toBe(false);
    await closed;
    expect(socket.destroyed).toBe(true);
    expect(errors).toEqual(['over 1048576 bytes queued: the peer does not read']);
  });

  it('keeps a connection whose peer reads, whatever it is sent in total', async () => {
    const { peer, socket } = await connectedPair();
    let received = 0;
    peer.on('data', (d: Buffer) => {
      received += d.length;
    });
    const flow = new SocketFlow('tcp', socket, undefined, 1024 * 1024);
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    // 4 MiB in all, four times the bound, never more than one chunk queued.
    for (let i = 0; i < 64; i++) {
      expect(flow.send(chunk)).toBe(true);
      if (socket.writableLength > 0) await once(socket, 'drain');
    }
    while (received < 64 * chunk.length) await new Promise((r) => setTimeout(r, 10));
    expect(flow.closed).toBe(false);
  });
});
