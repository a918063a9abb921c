import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Baresip } from '../support/baresip.js';
import { TestDnsServer } from '../support/dns.js';
import { pidf, TestClient } from '../support/jssip.js';
import { freePort } from '../support/ports.js';
import { digestAnswer, fresh, RawSipClient } from '../support/raw-sip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';
import { type Org, openTls, register, startOrg } from './edge-support.js';

const GRACE_SECONDS = 2;

describe('a client whose connection dies is offline at once', () => {
  let srv: TestServer;

  beforeAll(async () => {
    srv = await startTestServer({ registrar: { connectionGraceSeconds: GRACE_SECONDS } });
    await srv.addUser('alice', 'alice-pw');
    await srv.addUser('bob', 'bob-pw');
  });

  afterAll(async () => {
    await srv.stop();
  });

  const endpoints = () => readMetric(srv.server.httpUrl, 'parley_registered_endpoints');

  it('baresip over TCP killed with SIGKILL: its watcher sees it offline within the grace and a second', async () => {
    const alice = await Baresip.start({
      user: 'alice',
      domain: srv.domain,
      password: 'alice-pw',
      proxy: `sip:127.0.0.1:${srv.tcpPort};transport=tcp`,
    });
    const bob = await TestClient.signIn(`ws://127.0.0.1:${srv.wsPort}`, 'bob', srv.domain, 'bob-pw');
    try {
      await alice.waitFor(/200 OK|registered/i);
      const watch = bob.watch(`alice@${srv.domain}`);
      await watch.until((n) => n.body.includes('<basic>open</basic>'), 10_000);
      expect(await endpoints()).toBe(2);
      const killedAt = Date.now();
      alice.kill();
      await watch.next((n) => n.body.includes('<basic>closed</basic>'), (GRACE_SECONDS + 1) * 1000);
      expect(Date.now() - killedAt).toBeLessThan((GRACE_SECONDS + 1) * 1000);
      expect(await endpoints()).toBe(1);
    } finally {
      await alice.stop();
      await bob.stop();
    }
  }, 30_000);

  it('a client that reconnects within the grace stays online; what a lost device published goes with it', async () => {
    const contact = 'sip:alice@desk.invalid;ob';
    const first = await RawSipClient.open(srv.tcpPort);
    expect((await registerRaw(first, srv.domain, 'alice', 'alice-pw', contact)).status).toBe(200);
    const bob = await TestClient.signIn(`ws://127.0.0.1:${srv.wsPort}`, 'bob', srv.domain, 'bob-pw');
    const web = await TestClient.signIn(`ws://127.0.0.1:${srv.wsPort}`, 'alice', srv.domain, 'alice-pw');
    try {
      expect((await web.publish(pidf(`alice@${srv.domain}`, 'open', undefined, 'web'))).status).toBe(200);
      expect((await publishRaw(first, srv.domain, 'alice', 'alice-pw', 'desk')).status).toBe(200);
      const watch = bob.watch(`alice@${srv.domain}`);
      await watch.until((n) => n.body.includes('desk') && n.body.includes('web'));
      // The desk client's connection drops and it comes back at once over a new one.
      first.close();
      const second = await RawSipClient.open(srv.tcpPort);
      expect((await registerRaw(second, srv.domain, 'alice', 'alice-pw', contact)).status).toBe(200);
      await new Promise((r) => setTimeout(r, (GRACE_SECONDS + 0.5) * 1000));
      expect(await endpoints()).toBe(3);
      expect(watch.notifications.at(-1)?.body).toContain('desk');
      // Now it goes for good: the web client stays, and only what it published is left.
      second.close();
      const after = await watch.next((n) => !n.body.includes('desk'), (GRACE_SECONDS + 1) * 1000);
      expect(after.body).toContain('web');
      expect(after.body).toContain('<basic>open</basic>');
      expect(await endpoints()).toBe(2);
    } finally {
      first.close();
      await web.stop();
      await bob.stop();
    }
  }, 30_000);

  it('a contact of another address, registered on its behalf, outlives the connection that registered it', async () => {
    // As SIPp's register-contact scenario does for a listening UAS: the Contact is neither the
    // connection's source nor the Via's sent-by, so the server dials it; the connection is
    // only how the registration arrived.
    const before = await endpoints();
    const c = await RawSipClient.open(srv.tcpPort);
    expect(
      (await registerRaw(c, srv.domain, 'bob', 'bob-pw', 'sip:bob@127.0.0.1:5999;transport=tcp')).status,
    ).toBe(200);
    c.close();
    await new Promise((r) => setTimeout(r, (GRACE_SECONDS + 0.5) * 1000));
    expect(await endpoints()).toBe(before + 1);
  }, 30_000);
});

/** A TCP relay between the edge and its home, whose connections the test can cut. */
class Relay {
  private readonly sockets = new Set<Socket>();
  private constructor(private readonly server: Server) {}

  static async startOn(port: number, targetPort: number): Promise<Relay> {
    let relay!: Relay;
    const server = createServer((inbound) => {
      const outbound = connect({ host: '127.0.0.1', port: targetPort });
      for (const s of [inbound, outbound]) {
        relay.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          relay.sockets.delete(s);
          inbound.destroy();
          outbound.destroy();
        });
      }
      inbound.pipe(outbound);
      outbound.pipe(inbound);
    });
    relay = new Relay(server);
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
    return relay;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }
}

describe('remote users behind the edge', () => {
  let dns: TestDnsServer;
  let org: Org;
  let relay: Relay;

  beforeAll(async () => {
    dns = await TestDnsServer.start([]);
    // The edge reaches its home through the relay (the home's port is known once it runs).
    const edgeNext = await freePort();
    org = await startOrg(
      'loss',
      'server',
      dns,
      { edge: { next: `sip:127.0.0.1:${edgeNext};transport=tcp` } },
      { registrar: { connectionGraceSeconds: 1 } },
    );
    relay = await Relay.startOn(edgeNext, org.home.tcpPort);
    await org.home.addUser('carol', 'carol-secret');
  });

  afterAll(async () => {
    await relay?.close();
    await org?.stop();
    await dns?.close();
  });

  const endpoints = () => readMetric(org.home.server.httpUrl, 'parley_registered_endpoints');

  it("keeps a remote user's binding when the edge's connection to the home drops, drops it when the user's own does", async () => {
    const carol = await openTls(org.tlsPort);
    try {
      const reg = await register(carol, {
        user: 'carol',
        domain: 'loss.test',
        password: 'carol-secret',
        transport: 'TLS',
        contactHost: 'carol.invalid',
      });
      expect(reg.status).toBe(200);
      expect(await endpoints()).toBe(1);
      // The edge's connection to the home is shared by every remote user: its loss says nothing
      // about carol.
      relay.cut();
      await new Promise((r) => setTimeout(r, 2000));
      expect(await endpoints()).toBe(1);
      // Carol's own connection goes: the edge tells the home, which drops her after the grace.
      carol.close();
      await waitFor(async () => (await endpoints()) === 0, 4000);
    } finally {
      carol.close();
    }
  }, 30_000);
});

async function waitFor(test: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await test())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function registerRaw(c: RawSipClient, domain: string, user: string, password: string, contact: string) {
  const callId = fresh('reg');
  const uri = `sip:${domain}`;
  const send = (cseq: number, auth?: string) =>
    c.send(
      [
        `REGISTER ${uri} SIP/2.0`,
        `Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};branch=${fresh('z9hG4bK')};rport`,
        'Max-Forwards: 70',
        `From: <sip:${user}@${domain}>;tag=${fresh('t')}`,
        `To: <sip:${user}@${domain}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${cseq} REGISTER`,
        `Contact: <${contact}>`,
        'Expires: 600',
        ...(auth ? [`Authorization: ${auth}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n'),
    );
  send(1);
  let r = await c.response(5000);
  if (r.status === 401) {
    send(2, digestAnswer(r.header('www-authenticate') ?? '', { user, password, method: 'REGISTER', uri }));
    r = await c.response(5000);
  }
  return r;
}

async function publishRaw(c: RawSipClient, domain: string, user: string, password: string, note: string) {
  const uri = `sip:${user}@${domain}`;
  // Its own tuple id: the compositor merges tuples that share one.
  const body = pidf(`${user}@${domain}`, 'open', undefined, note).replace('id="t1"', `id="${note}"`);
  const callId = fresh('pub');
  const send = (cseq: number, auth?: string) =>
    c.send(
      [
        `PUBLISH ${uri} SIP/2.0`,
        `Via: SIP/2.0/TCP 127.0.0.1:${c.localPort};branch=${fresh('z9hG4bK')};rport`,
        'Max-Forwards: 70',
        `From: <${uri}>;tag=${fresh('t')}`,
        `To: <${uri}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${cseq} PUBLISH`,
        'Event: presence',
        'Expires: 600',
        ...(auth ? [`Proxy-Authorization: ${auth}`] : []),
        'Content-Type: application/pidf+xml',
        `Content-Length: ${Buffer.byteLength(body)}`,
        '',
        body,
      ].join('\r\n'),
    );
  send(1);
  let r = await c.response(5000);
  if (r.status === 407) {
    send(2, digestAnswer(r.header('proxy-authenticate') ?? '', { user, password, method: 'PUBLISH', uri }));
    r = await c.response(5000);
  }
  return r;
}
