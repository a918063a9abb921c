import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { type DeepPartial, loadConfig, type ParleyConfig } from '../../src/ops/config.js';
import { silentLogger } from '../../src/ops/log.js';
import { type ParleyServer, startServer } from '../../src/roles/server.js';
import { FederationRepository } from '../../src/store/federation.js';
import type { TestDnsServer } from '../support/dns.js';
import { freePort } from '../support/ports.js';
import { digestAnswer, fresh, type RawMessage, RawSipClient } from '../support/raw-sip.js';
import { startTestServer, type TestServer } from '../support/server.js';

export const pki = (name: string) => resolve(import.meta.dirname, '../../fixtures/pki', name);

/** One organisation on loopback: a standard server as its home and an edge in front of it. */
export interface Org {
  domain: string;
  home: TestServer;
  edge: ParleyServer;
  /** The edge's inside listener (what the home reaches it at). */
  internalPort: number;
  /** The edge's TLS listener for remote users. */
  tlsPort: number;
  wssPort: number;
  /** The edge's mutual-TLS federation listener. */
  federationPort: number;
  federation: FederationRepository;
  stop(): Promise<void>;
}

/**
 * Starts a home (trusting the edge's address, sending other domains to the edge) and an edge
 * with the given certificate, SRV lookups sent to `dns`. Inside clients must connect from
 * another loopback address than 127.0.0.1, which the home trusts as its edge.
 */
export async function startOrg(
  name: string,
  cert: string,
  dns: TestDnsServer,
  edgeOverrides: DeepPartial<ParleyConfig> = {},
  homeOverrides: DeepPartial<ParleyConfig> = {},
): Promise<Org> {
  const domain = `${name}.test`;
  const internalPort = await freePort();
  const home = await startTestServer({
    domain,
    serverId: `${name}-home`,
    trustedPeers: ['127.0.0.1'],
    federation: { edge: `sip:127.0.0.1:${internalPort};transport=tcp` },
    ...homeOverrides,
  });
  const dataDir = mkdtempSync(join(tmpdir(), 'edge-e2e-'));
  const config = loadConfig({
    cwd: dataDir,
    env: {},
    overrides: {
      domain,
      role: 'edge',
      serverId: `${name}-edge`,
      listen: {
        tls: { host: '127.0.0.1', port: 0 },
        wss: { host: '127.0.0.1', port: 0 },
        internal: { host: '127.0.0.1', port: internalPort },
        federation: { host: '127.0.0.1', port: 0 },
      },
      tls: { cert: pki(`${cert}.crt`), key: pki(`${cert}.key`), ca: pki('ca.crt') },
      federation: { dnsServers: [dns.address] },
      http: { host: '127.0.0.1', port: 0 },
      database: { dataDir },
      log: { level: 'warn' },
      ...edgeOverrides,
      edge: { next: `sip:127.0.0.1:${home.tcpPort};transport=tcp`, ...edgeOverrides.edge },
    },
  });
  const edge = await startServer(config, {
    log: process.env.PARLEY_TEST_LOG ? undefined : silentLogger(),
  });
  const port = (pred: (l: ParleyServer['listening'][number]) => boolean) =>
    edge.listening.find(pred)?.port ?? 0;
  return {
    domain,
    home,
    edge,
    internalPort,
    tlsPort: port((l) => l.transport === 'tls' && !l.name),
    wssPort: port((l) => l.transport === 'wss'),
    federationPort: port((l) => l.name === 'federation'),
    federation: new FederationRepository(edge.db),
    async stop() {
      await edge.close();
      await home.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A raw SIP client over TLS (a remote user, or someone posing as a partner's edge). */
export async function openTls(
  port: number,
  opts: { cert?: string; localAddress?: string } = {},
): Promise<RawSipClient> {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    ca: readPki('ca.crt'),
    cert: opts.cert ? readPki(`${opts.cert}.crt`) : undefined,
    key: opts.cert ? readPki(`${opts.cert}.key`) : undefined,
    // Passed on to net.connect (the TLS typings leave it out).
    localAddress: opts.localAddress,
  } as ConnectionOptions);
  await once(socket, 'secureConnect');
  // RawSipClient reads any stream socket; its constructor is private only to steer callers to open().
  return new (RawSipClient as unknown as new (s: typeof socket) => RawSipClient)(socket);
}

function readPki(name: string): Buffer {
  return readFileSync(pki(name));
}

/** REGISTER with a digest answer to the 401; the final response. */
export async function register(
  c: RawSipClient,
  opts: { user: string; domain: string; password: string; transport: 'TCP' | 'TLS'; contactHost?: string },
): Promise<RawMessage> {
  const callId = fresh('reg');
  const tag = fresh('t');
  const uri = `sip:${opts.domain}`;
  const contact = `<sip:${opts.user}@${opts.contactHost ?? `127.0.0.1:${c.localPort}`};transport=${opts.transport.toLowerCase()}>`;
  const send = (cseq: number, auth?: string) =>
    c.send(
      [
        `REGISTER ${uri} SIP/2.0`,
        `Via: SIP/2.0/${opts.transport} 127.0.0.1:${c.localPort};branch=${fresh('z9hG4bK')};rport`,
        'Max-Forwards: 70',
        `From: <sip:${opts.user}@${opts.domain}>;tag=${tag}`,
        `To: <sip:${opts.user}@${opts.domain}>`,
        `Call-ID: ${callId}`,
        `CSeq: ${cseq} REGISTER`,
        `Contact: ${contact}`,
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
    const challenge = r.header('www-authenticate') ?? '';
    send(2, digestAnswer(challenge, { user: opts.user, password: opts.password, method: 'REGISTER', uri }));
    r = await c.response(5000);
  }
  return r;
}

/**
 * An inside user signed in at a home over TCP, from a loopback address of its own (the
 * homes trust 127.0.0.1, where the edge connects from). Password `${user}-secret`.
 */
export async function signInInside(
  homeTcpPort: number,
  user: string,
  domain: string,
  fromAddress: string,
): Promise<RawSipClient> {
  const c = await RawSipClient.open(homeTcpPort, '127.0.0.1', fromAddress);
  const reg = await register(c, {
    user,
    domain,
    password: `${user}-secret`,
    transport: 'TCP',
    contactHost: `${fromAddress}:${c.localPort}`,
  });
  if (reg.status !== 200) throw new Error(`${user} could not sign in at the home: ${reg.startLine}`);
  return c;
}

/** Sends a MESSAGE; returns its Call-ID. */
export function sendMessage(
  c: RawSipClient,
  opts: {
    from: string;
    to: string;
    body: string;
    transport: 'TCP' | 'TLS';
    auth?: string;
    cseq?: number;
    callId?: string;
  },
): string {
  const callId = opts.callId ?? fresh('im');
  c.send(
    [
      `MESSAGE sip:${opts.to} SIP/2.0`,
      `Via: SIP/2.0/${opts.transport} 127.0.0.1:${c.localPort};branch=${fresh('z9hG4bK')};rport`,
      'Max-Forwards: 70',
      `From: <sip:${opts.from}>;tag=${fresh('t')}`,
      `To: <sip:${opts.to}>`,
      `Call-ID: ${callId}`,
      `CSeq: ${opts.cseq ?? 1} MESSAGE`,
      ...(opts.auth ? [`Proxy-Authorization: ${opts.auth}`] : []),
      'Content-Type: text/plain',
      `Content-Length: ${Buffer.byteLength(opts.body)}`,
      '',
      opts.body,
    ].join('\r\n'),
  );
  return callId;
}

/** Answers a request the client received (copying Via, From, To, Call-ID, CSeq). */
export function answer(c: RawSipClient, request: RawMessage, status = 200): void {
  const copy = (name: string) => request.headers(name).map((v) => `${name}: ${v}`);
  const to = request.header('to') ?? '';
  c.send(
    [
      `SIP/2.0 ${status} ${status === 200 ? 'OK' : 'Whatever'}`,
      ...copy('Via'),
      ...copy('From'),
      `To: ${to.includes('tag=') ? to : `${to};tag=${fresh('a')}`}`,
      ...copy('Call-ID'),
      ...copy('CSeq'),
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  );
}

/** The next request the client receives (skipping responses). */
export async function nextRequest(c: RawSipClient, timeoutMs = 5000): Promise<RawMessage> {
  for (;;) {
    const m = await c.next(timeoutMs);
    if (m.method) return m;
  }
}

/** Allows `domain` on an organisation's edge and waits for the running edge to see it. */
export async function allow(org: Org, domain: string, edgeFqdn?: string): Promise<void> {
  await org.federation.put({ domain, action: 'allow', edgeFqdn });
  await settle();
}

/** The store's notification reaches the edge within a second; tests wait a little for it. */
export function settle(ms = 300): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
