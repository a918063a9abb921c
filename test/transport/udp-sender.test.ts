import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { TurnBatchedUdpSender, UdpFlow } from '../../src/transport/flow.js';

describe('TurnBatchedUdpSender', () => {
  const sockets: Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.close();
  });

  async function bound(): Promise<Socket> {
    const s = createSocket('udp4');
    sockets.push(s);
    s.bind(0, '127.0.0.1');
    await once(s, 'listening');
    return s;
  }

  it('sends the datagrams of one turn once the turn is done, in order, each to its peer', async () => {
    const [from, a, b] = await Promise.all([bound(), bound(), bound()]);
    const sender = new TurnBatchedUdpSender(from);
    const got: string[] = [];
    const arrived = new Promise<void>((resolve) => {
      const take = (who: string) => (data: Buffer) => {
        got.push(`${who}:${data.toString()}`);
        if (got.length === 4) resolve();
      };
      a.on('message', take('a'));
      b.on('message', take('b'));
    });
    const flowA = new UdpFlow(sender, '127.0.0.1', a.address().port, '127.0.0.1', from.address().port);
    const flowB = new UdpFlow(sender, '127.0.0.1', b.address().port, '127.0.0.1', from.address().port);
    const sent: string[] = [];
    const real = from.send.bind(from) as (data: Buffer, port: number, address: string) => void;
    from.send = ((data: Buffer, port: number, address: string) => {
      sent.push(data.toString());
      real(data, port, address);
    }) as typeof from.send;
    expect(flowA.send(Buffer.from('1'))).toBe(true);
    expect(flowB.send(Buffer.from('2'))).toBe(true);
    expect(flowA.send(Buffer.from('3'))).toBe(true);
    // Nothing left during the turn...
    await Promise.resolve();
    expect(sent).toEqual([]);
    // ...everything after it, in the order sent.
    await new Promise((r) => setImmediate(r));
    expect(sent).toEqual(['1', '2', '3']);
    flowB.send(Buffer.from('4'));
    await arrived;
    expect(got.filter((g) => g.startsWith('a'))).toEqual(['a:1', 'a:3']);
    expect(got.filter((g) => g.startsWith('b'))).toEqual(['b:2', 'b:4']);
  });

  it('reports a datagram the socket refuses and still sends the rest', async () => {
    const errors: unknown[] = [];
    const sent: string[] = [];
    const sender = new TurnBatchedUdpSender(
      {
        send: (data) => {
          if (data.toString() === 'bad') throw new Error('socket closed');
          sent.push(data.toString());
        },
      },
      (err) => errors.push(err),
    );
    sender.send(Buffer.from('one'), 5060, '127.0.0.1');
    sender.send(Buffer.from('bad'), 5060, '127.0.0.1');
    sender.send(Buffer.from('two'), 5060, '127.0.0.1');
    sender.flush();
    expect(sent).toEqual(['one', 'two']);
    expect(errors).toHaveLength(1);
    // Flushed by hand: the turn's end finds nothing more to send.
    await new Promise((r) => setImmediate(r));
    expect(sent).toEqual(['one', 'two']);
  });
});
