import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import pino from 'pino';
import { afterEach, expect, it } from 'vitest';
import { Draining } from '../../src/roles/server-shutdown.js';
import { TransportLayer } from '../../src/transport/layer.js';

/**
 * A drain waits for the connections open when it began, which it closes, and not for one
 * the server dials while it drains (a NOTIFY to a watcher's contact, a request relayed to
 * another front-end): such a connection is the server's own and idles for minutes. Real
 * sockets on loopback, a real transport layer.
 */

const cleanup: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo();
});

it('is done when the connections it closed have gone, not held by one dialled meanwhile', async () => {
  const draining = new Draining();
  const transport = new TransportLayer({
    listen: { tcp: { host: '127.0.0.1', port: 0 } },
    log: pino({ level: 'silent' }),
  });
  const [listening] = await transport.start({
    onMessage: () => {},
    onParseError: () => {},
    onFlowClosed: () => draining.flowClosed(),
  });
  cleanup.push(() => transport.stop());

  // A peer the server will dial during the drain: it accepts and keeps the connection open.
  const held: Socket[] = [];
  const peer = createServer((s) => held.push(s));
  await new Promise<void>((r) => peer.listen(0, '127.0.0.1', () => r()));
  cleanup.push(() => {
    for (const s of held) s.destroy();
    return new Promise<void>((r) => peer.close(() => r()));
  });

  // A client whose connection the drain closes. It does not answer the server's FIN
  // (allowHalfOpen), so the server's side goes only when the flow destroys it (2 s later):
  // time enough for the server to dial out before the client's flow has gone.
  const client = connect({ host: '127.0.0.1', port: listening.port, allowHalfOpen: true });
  await once(client, 'connect');
  cleanup.push(() => {
    client.destroy();
  });
  await expect.poll(() => transport.connectionCount).toBe(1);

  const began = Date.now();
  draining.active = true;
  const drained = draining.closeFlows(transport, 60_000);
  const outbound = await transport.connect('tcp', '127.0.0.1', (peer.address() as { port: number }).port);
  expect(outbound.closed).toBe(false);
  await drained;
  // Done when the client's connection went (about 2 s), far from the 60 s timeout.
  expect(Date.now() - began).toBeLessThan(30_000);
  expect([...transport.allFlows()]).toEqual([outbound]);
}, 45_000);
