import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import pino from 'pino';
import { afterEach, expect, it } from 'vitest';
import type { SipMessage } from '../../src/sip/message.js';
import type { Flow } from '../../src/transport/flow.js';
import { TransportLayer } from '../../src/transport/layer.js';

/**
 * The datagrams libuv reads in one pass of the poll phase are handled together after it,
 * and their responses leave after the last is handled: a real transport layer on loopback,
 * a real client socket.
 */

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo();
});

function options(n: number, port: number): Buffer {
  return Buffer.from(
    [
      'OPTIONS sip:example.com SIP/2.0',
      `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK-inbox-${n};rport`,
      'From: <sip:a@example.com>;tag=a',
      'To: <sip:example.com>',
      `Call-ID: inbox-${n}`,
      `CSeq: ${n} OPTIONS`,
      'Max-Forwards: 70',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  );
}

/** A transport layer on a loopback UDP port, each message handed to `onMessage`, and a client socket. */
async function udpLayer(
  onMessage: (message: SipMessage, flow: Flow) => void,
): Promise<{ transport: TransportLayer; port: number; client: Socket }> {
  const transport = new TransportLayer({
    listen: { udp: { host: '127.0.0.1', port: 0 } },
    log: pino({ level: 'silent' }),
  });
  const [listening] = await transport.start({ onMessage, onParseError: () => {}, onFlowClosed: () => {} });
  cleanup.push(() => transport.stop());
  const client: Socket = createSocket('udp4');
  client.bind(0, '127.0.0.1');
  await once(client, 'listening');
  cleanup.push(() => {
    client.close();
  });
  return { transport, port: listening.port, client };
}

it('handles a burst of datagrams in one go, in order, and sends their answers after the last', async () => {
  // What happened, in order: a message handled, the microtasks between two callbacks.
  const events: string[] = [];
  const { port: serverPort, client } = await udpLayer((message, flow) => {
    events.push(`handled ${message.cseq.seq}`);
    // Run between two callbacks of the event loop: between two datagrams when each is a
    // callback of its own, after the burst when it is handled in one.
    queueMicrotask(() => events.push('microtasks'));
    flow.send(Buffer.from(`answer ${message.cseq.seq}`));
  });
  const answers: string[] = [];
  client.on('message', (data: Buffer) => answers.push(data.toString()));

  // Five datagrams queued at the server's socket before its loop reads any: the client's
  // sends all complete (on loopback the kernel delivers them at once) while this thread is
  // still busy, so the server reads them in one pass.
  const port = client.address().port;
  await Promise.all(
    [1, 2, 3, 4, 5].map(
      (n) =>
        new Promise<void>((resolve, reject) =>
          client.send(options(n, port), serverPort, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
        ),
    ),
  );
  await expect.poll(() => answers.length).toBe(5);
  expect(answers).toEqual(['answer 1', 'answer 2', 'answer 3', 'answer 4', 'answer 5']);
  expect(events).toEqual([
    'handled 1',
    'handled 2',
    'handled 3',
    'handled 4',
    'handled 5',
    'microtasks',
    'microtasks',
    'microtasks',
    'microtasks',
    'microtasks',
  ]);
});

it('drops what it read but had not handled when it stops', async () => {
  const handled: number[] = [];
  const {
    transport,
    port: serverPort,
    client,
  } = await udpLayer((message) => {
    handled.push(message.cseq.seq);
  });
  await new Promise<void>((resolve) =>
    client.send(options(1, client.address().port), serverPort, '127.0.0.1', () => resolve()),
  );
  await expect.poll(() => handled.length).toBe(1);
  // Read in a poll pass and stopped before the pass's handling (the check phase) comes.
  const read = new Promise<void>((resolve) => {
    const socket = (transport as unknown as { udpSocket: Socket }).udpSocket;
    socket.prependOnceListener('message', () => {
      void transport.stop();
      resolve();
    });
  });
  client.send(options(2, client.address().port), serverPort, '127.0.0.1');
  await read;
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  expect(handled).toEqual([1]);
});

it('sends to a peer named by address or by name (the name through dns.lookup)', async () => {
  const { transport, client } = await udpLayer(() => {});
  const got: string[] = [];
  client.on('message', (data: Buffer) => got.push(data.toString()));
  const port = client.address().port;
  transport.findFlow('udp', '127.0.0.1', port)?.send(Buffer.from('to the address'));
  transport.findFlow('udp', 'localhost', port)?.send(Buffer.from('to the name'));
  await expect.poll(() => got.length).toBe(2);
  expect(got.sort()).toEqual(['to the address', 'to the name']);
});

it('keeps one flow per peer, datagrams from several peers interleaved, and a new one once the idle sweep forgot it', async () => {
  const flows: Flow[] = [];
  const {
    transport,
    port: serverPort,
    client,
  } = await udpLayer((_message, flow) => {
    flows.push(flow);
  });
  const other: Socket = createSocket('udp4');
  other.bind(0, '127.0.0.1');
  await once(other, 'listening');
  cleanup.push(() => {
    other.close();
  });
  const send = (from: Socket, n: number) =>
    new Promise<void>((resolve) =>
      from.send(options(n, from.address().port), serverPort, '127.0.0.1', () => resolve()),
    );
  for (const [from, n] of [
    [client, 1],
    [client, 2],
    [other, 3],
    [client, 4],
  ] as const) {
    await send(from, n);
    await expect.poll(() => flows.length).toBe(n);
  }
  expect(flows[1]).toBe(flows[0]);
  expect(flows[2]).not.toBe(flows[0]);
  expect(flows[2]?.remotePort).toBe(other.address().port);
  expect(flows[3]).toBe(flows[0]);
  expect(transport.flow(flows[0]!.id)).toBe(flows[0]);
  // The idle sweep forgets the client's flow (its id no longer names it); the next datagram
  // from the client makes a new one, found by its id.
  (transport as unknown as { forgetIdleUdpPeers(now: number, idleMs: number): void }).forgetIdleUdpPeers(
    Date.now() + 10_000,
    1_000,
  );
  expect(transport.flow(flows[0]!.id)).toBeUndefined();
  await send(client, 5);
  await expect.poll(() => flows.length).toBe(5);
  expect(flows[4]).not.toBe(flows[0]);
  expect(transport.flow(flows[4]!.id)).toBe(flows[4]);
});
