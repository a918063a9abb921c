import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createServer as createTlsServer, type Server, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/ops/config.js';
import { HomeRepository } from '../../src/store/homes.js';
import { digestAnswer, fresh, RawSipClient, Sink } from '../support/raw-sip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';

const pki = (name: string) => resolve(import.meta.dirname, '../../fixtures/pki', name);
const PEER = '127.0.0.2';

/**
 * security: high between servers: a server peer (trustedPeers, here 127.0.0.2 standing in for a
 * director or another home) reaches the server over mutual TLS only, and the server dials other
 * servers over TLS only, presenting its own certificate. Clients still need none.
 */
describe('security: high, mutual TLS between servers', () => {
  let t: TestServer;
  let tlsPort: number;
  let alice: RawSipClient;
  const tlsSink: { server?: Server; names: string[]; data: string } = { names: [], data: '' };

  beforeAll(async () => {
    t = await startTestServer({
      security: 'high',
      listen: { tls: { host: '127.0.0.1', port: 0 } },
      tls: { cert: pki('server.crt'), key: pki('server.key'), ca: pki('ca.crt'), requireClientCert: false },
      trustedPeers: [PEER],
    });
    tlsPort = t.server.listening.find((l) => l.transport === 'tls')!.port;
    for (const name of ['alice', 'bob', 'carol']) await t.addUser(name, 'secret');

    // alice, a client: TLS without a certificate, SHA-256 digest.
    alice = await RawSipClient.openTls(tlsPort, { ca: readFileSync(pki('ca.crt')) });
    const register = (cseq: number, auth?: string) =>
      [
        `REGISTER sip:${t.domain} SIP/2.0`,
        `Via: SIP/2.0/TLS 127.0.0.1:${alice.localPort};branch=${fresh('z9hG4bK')}`,
        'Max-Forwards: 70',
        `From: <sip:alice@${t.domain}>;tag=a1`,
        `To: <sip:alice@${t.domain}>`,
        'Call-ID: mtls-alice',
        `CSeq: ${cseq} REGISTER`,
        `Contact: <sip:alice@127.0.0.1:${alice.localPort};transport=tls>`,
        ...(auth ? [`Authorization: ${auth}`] : []),
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n');
    alice.send(register(1));
    const challenge = (await alice.response()).header('www-authenticate') ?? '';
    alice.send(
      register(
        2,
        digestAnswer(challenge, {
          user: 'alice',
          password: 'secret',
          method: 'REGISTER',
          uri: `sip:${t.domain}`,
          algorithm: 'SHA-256',
        }),
      ),
    );
    expect((await alice.response()).status).toBe(200);
  });
  afterAll(async () => {
    alice?.close();
    tlsSink.server?.close();
    await t?.stop();
  });

  /** A MESSAGE as a server peer sends it: asserted identity, no credentials (RFC 3325). */
  const peerMessage = (to: string, body: string) =>
    [
      `MESSAGE sip:${to}@${t.domain} SIP/2.0`,
      `Via: SIP/2.0/TLS ${PEER}:5061;branch=${fresh('z9hG4bK')}`,
      'Max-Forwards: 69',
      `From: <sip:bob@${t.domain}>;tag=${fresh('b')}`,
      `To: <sip:${to}@${t.domain}>`,
      `Call-ID: ${fresh('mtls')}`,
      'CSeq: 1 MESSAGE',
      `P-Asserted-Identity: <sip:bob@${t.domain}>`,
      'Content-Type: text/plain',
      `Content-Length: ${Buffer.byteLength(body)}`,
      '',
      body,
    ].join('\r\n');

  it('refuses a server peer over TLS without a certificate, or with one the CA did not sign', async () => {
    const ca = readFileSync(pki('ca.crt'));
    const attempts = [
      { ca, localAddress: PEER },
      {
        ca,
        localAddress: PEER,
        cert: readFileSync(pki('impostor-edge.crt')),
        key: readFileSync(pki('impostor-edge.key')),
      },
    ];
    for (const options of attempts) {
      const peer = await RawSipClient.openTls(tlsPort, options).catch(() => undefined);
      if (peer) {
        peer.send(peerMessage('alice', 'forged hop'));
        await expect(peer.response(2000)).rejects.toThrow(/connection closed/);
        peer.close();
      }
    }
    expect(await alice.silent(300)).toBe(true);
    expect(
      await readMetric(t.server.httpUrl, 'parley_sip_connections_refused_total', {
        reason: 'peer_certificate',
      }),
    ).toBe(2);
  });

  it('takes a server peer hop that presents a certificate of the CA', async () => {
    const peer = await RawSipClient.openTls(tlsPort, {
      ca: readFileSync(pki('ca.crt')),
      localAddress: PEER,
      cert: readFileSync(pki('partner-edge.crt')),
      key: readFileSync(pki('partner-edge.key')),
    });
    peer.send(peerMessage('alice', 'over mutual TLS'));
    const delivered = await alice.next();
    expect(delivered.method).toBe('MESSAGE');
    expect(delivered.body).toBe('over mutual TLS');
    alice.send(
      `SIP/2.0 200 OK\r\n${delivered.head
        .split('\r\n')
        .filter((l) => /^(via|from|to|call-id|cseq):/i.test(l))
        .join('\r\n')}\r\nContent-Length: 0\r\n\r\n`,
    );
    expect((await peer.response()).status).toBe(200);
    peer.close();
  });

  it('dials another home over TLS only, with its own certificate; a tcp home is never connected to', async () => {
    const sink = await Sink.start();
    const homes = new HomeRepository(t.server.db);
    await homes.upsertHome({
      name: 'tcp-home',
      kind: 'standard',
      address: `sip:127.0.0.1:${sink.port};transport=tcp`,
    });
    await homes.setPlacement(`carol@${t.domain}`, 'tcp-home');
    const peer = await RawSipClient.openTls(tlsPort, {
      ca: readFileSync(pki('ca.crt')),
      localAddress: PEER,
      cert: readFileSync(pki('partner-edge.crt')),
      key: readFileSync(pki('partner-edge.key')),
    });
    peer.send(peerMessage('carol', 'to a tcp home'));
    // The dial is refused before any connection: the branch fails as an unreachable hop does.
    expect((await peer.response(5000)).status).toBe(480);
    expect(sink.connections).toBe(0);
    await sink.close();

    // A home on TLS that demands a client certificate of the CA: our server presents its own.
    tlsSink.server = createTlsServer(
      {
        cert: readFileSync(pki('partner-edge.crt')),
        key: readFileSync(pki('partner-edge.key')),
        ca: readFileSync(pki('ca.crt')),
        requestCert: true,
        rejectUnauthorized: true,
      },
      (socket: TLSSocket) => {
        tlsSink.names.push(String(socket.getPeerCertificate().subject?.CN));
        socket.on('data', (d: Buffer) => {
          tlsSink.data += d.toString();
        });
      },
    );
    await new Promise<void>((r) => tlsSink.server!.listen(0, '127.0.0.1', () => r()));
    const port = (tlsSink.server.address() as { port: number }).port;
    await homes.upsertHome({
      name: 'tls-home',
      kind: 'standard',
      address: `sip:127.0.0.1:${port};transport=tls`,
    });
    await homes.setPlacement(`carol@${t.domain}`, 'tls-home');
    await expect
      .poll(
        () => {
          peer.send(peerMessage('carol', 'to a tls home'));
          return tlsSink.data;
        },
        { timeout: 5000, interval: 500 },
      )
      .toMatch(/^MESSAGE sip:carol@/m);
    expect(tlsSink.names[0]).toBe('edge.parley.test');
    peer.close();
  });

  it('refuses server hops named over TCP in the configuration', () => {
    const load = (extra: object) => () =>
      loadConfig({
        cwd: '/tmp',
        env: {},
        overrides: {
          security: 'high',
          tls: { cert: pki('server.crt'), key: pki('server.key') },
          ...extra,
        } as never,
      });
    expect(load({ homes: { director: 'sip:director.internal:5060;transport=tcp' } })).toThrow(
      /homes\.director: .*mutual TLS only/,
    );
    expect(load({ federation: { edge: 'sip:edge.internal:5060' } })).toThrow(/federation\.edge/);
    expect(load({ homes: { director: 'sip:director.internal:5061;transport=tls' } })).not.toThrow();
  });
});
