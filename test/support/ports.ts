import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';

/**
 * A loopback port that a process started by the test can listen on, over TCP and UDP.
 *
 * Where the thing under test takes port 0 and reports what it got, use that: nothing can
 * take the port between the choice and the listen. This is for what must be told its port
 * first (the server's --http, a SIPp UAS, baresip's control port, an edge's inside listener).
 *
 * A port asked of the kernel with listen(0) comes from the ephemeral range
 * (net.ipv4.ip_local_port_range, 32768-60999 on Debian), the same range that every
 * outgoing connection of every test file running beside this one takes its local port
 * from. Once released, such a port can become the local end of some other test's
 * connection before our server binds it, and the server then stops with ADDRESS_IN_USE (CI
 * run of 3 December 2026, 15:08: test/cli/server-heap.test.ts). So ports come from below
 * that range, 20000-32767, in a slice of their own for each of Vitest's forks, walked in
 * turn from a random start, and each is checked free over TCP and UDP before it is given.
 */
const BAND_START = 20_000;
const BAND_END = 32_768;
const SLICES = 16;
const SLICE = Math.floor((BAND_END - BAND_START) / SLICES);

const fork = Number(process.env.VITEST_POOL_ID ?? process.env.VITEST_WORKER_ID ?? 0);
const sliceStart = BAND_START + (((fork % SLICES) + SLICES) % SLICES) * SLICE;
let next = Math.floor(Math.random() * SLICE);

function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export async function freePort(): Promise<number> {
  for (let tries = 0; tries < SLICE; tries++) {
    const port = sliceStart + (next++ % SLICE);
    if ((await tcpFree(port)) && (await udpFree(port))) return port;
  }
  throw new Error(`no free loopback port in ${sliceStart}-${sliceStart + SLICE - 1}`);
}
