import { spawn } from 'node:child_process';
import { type AddressInfo, connect, createServer } from 'node:net';
import { ensureDebianCommand } from './debian.js';

export interface TlsTunnel {
  /** The loopback TCP port SIPp connects to. */
  port: number;
  stop(): void;
}

/**
 * Debian's sip-tester is built without OpenSSL (`-t l1` answers "To use a TLS transport you
 * must compile SIPp with OpenSSL"), so SIPp reaches a TLS listener through socat: plain TCP
 * on a loopback port, TLS (the server's certificate checked against `ca` and `name`; ours
 * when `cert` is given) to the target. One TLS connection per SIPp connection.
 */
export async function startTlsTunnel(
  target: { host: string; port: number; name: string },
  tls: { ca: string; cert?: string; key?: string },
  /** The address the TLS side connects from (servers that trust 127.0.0.1 as their edge). */
  bind?: string,
): Promise<TlsTunnel> {
  const socat = ensureDebianCommand('socat', 'socat');
  const port = await new Promise<number>((resolvePort) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolvePort(p));
    });
  });
  const openssl = [
    `OPENSSL:${target.host}:${target.port}`,
    `cafile=${tls.ca}`,
    'verify=1',
    `commonname=${target.name}`,
    ...(tls.cert && tls.key ? [`cert=${tls.cert}`, `key=${tls.key}`] : []),
    ...(bind ? [`bind=${bind}`] : []),
    'nodelay',
  ].join(',');
  const child = spawn(socat, [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork,nodelay`, openssl], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 5_000;
  for (;;) {
    const up = await new Promise<boolean>((r) => {
      const c = connect(port, '127.0.0.1', () => {
        c.destroy();
        r(true);
      });
      c.on('error', () => r(false));
    });
    if (up) break;
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`socat did not listen on 127.0.0.1:${port}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, stop: () => child.kill('SIGTERM') };
}
