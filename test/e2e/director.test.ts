import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HomeRepository } from '../../src/store/homes.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** A minimal REGISTER client on a raw socket, with its own MD5 digest (RFC 2617 with qop=auth). */
class RawRegistrar {
  private buffer = '';
  private constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffer += d.toString();
    });
  }

  static open(port: number): Promise<RawRegistrar> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new RawRegistrar(s)));
      s.once('error', reject);
    });
  }

  async register(user: string, domain: string, password: string): Promise<string> {
    const send = (cseq: number, auth?: string) =>
      this.socket.write(
        [
          `REGISTER sip:${domain} SIP/2.0`,
          `Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK${user}${cseq}`,
          `From: <sip:${user}@${domain}>;tag=${user}`,
          `To: <sip:${user}@${domain}>`,
          `Call-ID: dir-${user}`,
          `CSeq: ${cseq} REGISTER`,
          `Contact: <sip:${user}@127.0.0.1:5999;transport=tcp>`,
          ...(auth ? [`Authorization: ${auth}`] : []),
          'Max-Forwards: 70',
          'Content-Length: 0',
          '',
          '',
        ].join('\r\n'),
      );
    send(1);
    const challenge = await this.response();
    const nonce = /nonce="([^"]+)"/.exec(challenge)?.[1];
    const realm = /realm="([^"]+)"/.exec(challenge)?.[1];
    if (!nonce || !realm) return challenge;
    const md5 = (s: string) => createHash('md5').update(s).digest('hex');
    const uri = `sip:${domain}`;
    const ha1 = md5(`${user}:${realm}:${password}`);
    const ha2 = md5(`REGISTER:${uri}`);
    const cnonce = 'abcdef';
    const response = md5(`${ha1}:${nonce}:00000001:${cnonce}:auth:${ha2}`);
    send(
      2,
      `Digest username="${user}", realm="${realm}", nonce="${nonce}", uri="${uri}", response="${response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="${cnonce}"`,
    );
    return this.response();
  }

  private async response(): Promise<string> {
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end >= 0) {
        const head = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 4);
        return head;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('no response');
  }

  close(): void {
    this.socket.destroy();
  }
}

describe('director', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ role: 'director', serverId: 'director1' });
    const homes = new HomeRepository(t.server.db);
    await homes.upsertHome({
      name: 'legacy1',
      kind: 'standard',
      address: 'sip:192.0.2.10:5060;transport=tcp',
    });
    await homes.upsertHome({
      name: 'pool1',
      kind: 'pool',
      address: 'sip:pool1.example.com:5061;transport=tls',
    });
    await t.addUser('alice', 'alice-secret');
    await t.addUser('bob', 'bob-secret');
    await t.addUser('nohome', 'secret');
    await homes.setPlacement('alice@example.com', 'legacy1');
    await homes.setPlacement('bob@example.com', 'pool1');
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('redirects each user to its home after authenticating it', async () => {
    const c = await RawRegistrar.open(t.tcpPort);
    const alice = await c.register('alice', 'example.com', 'alice-secret');
    expect(alice).toMatch(/^SIP\/2\.0 302 /);
    expect(alice).toMatch(/^Contact: <sip:192\.0\.2\.10:5060;transport=tcp>/m);
    const bob = await c.register('bob', 'example.com', 'bob-secret');
    expect(bob).toMatch(/^SIP\/2\.0 302 /);
    expect(bob).toMatch(/^Contact: <sip:pool1\.example\.com:5061;transport=tls>/m);
    c.close();
  });

  it('follows a placement change (a migrated user) at the next sign-in', async () => {
    await new HomeRepository(t.server.db).setPlacement('alice@example.com', 'pool1');
    const c = await RawRegistrar.open(t.tcpPort);
    const alice = await c.register('alice', 'example.com', 'alice-secret');
    expect(alice).toMatch(/^Contact: <sip:pool1\.example\.com:5061;transport=tls>/m);
    c.close();
  });

  it('challenges a wrong password and answers 404 for a user without a home', async () => {
    const c = await RawRegistrar.open(t.tcpPort);
    expect(await c.register('bob', 'example.com', 'wrong')).toMatch(/^SIP\/2\.0 401 /);
    expect(await c.register('nohome', 'example.com', 'secret')).toMatch(/^SIP\/2\.0 404 /);
    c.close();
  });
});
