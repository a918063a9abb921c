import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startTestServer, type TestServer } from '../support/server.js';

const pki = (name: string) => resolve(import.meta.dirname, '../../fixtures/pki', name);
const ca = readFileSync(pki('ca.crt'));

function options(port: number): string {
  return [
    `OPTIONS sip:127.0.0.1:${port} SIP/2.0`,
    `Via: SIP/2.0/TLS 127.0.0.1:5999;branch=z9hG4bKtls${Math.random().toString(36).slice(2)}`,
    'From: <sip:tester@example.com>;tag=t1',
    'To: <sip:127.0.0.1>',
    `Call-ID: tls-${Math.random().toString(36).slice(2)}`,
    'CSeq: 1 OPTIONS',
    'Max-Forwards: 70',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

function tlsConnect(
  port: number,
  extra: { cert?: Buffer; key?: Buffer; ca?: Buffer } = {},
): Promise<TLSSocket> {
  return new Promise((done, fail) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: extra.ca ?? ca,
      cert: extra.cert,
      key: extra.key,
      servername: 'localhost',
    });
    socket.once('secureConnect', () => done(socket));
    socket.once('error', fail);
  });
}

function firstResponse(socket: TLSSocket): Promise<string> {
  return new Promise((done, fail) => {
    let text = '';
    socket.on('data', (d: Buffer) => {
      text += d.toString();
      if (text.includes('\r\n\r\n')) done(text.split('\r\n')[0]);
    });
    socket.once('error', fail);
    socket.once('close', () => fail(new Error(`closed after ${JSON.stringify(text)}`)));
  });
}

describe('TLS and secure WebSocket transports', () => {
  let t: TestServer;
  let tlsPort: number;
  let wssPort: number;
  beforeAll(async () => {
    t = await startTestServer({
      listen: {
        tcp: { host: '127.0.0.1', port: 0 },
        tls: { host: '127.0.0.1', port: 0 },
        wss: { host: '127.0.0.1', port: 0 },
      },
      tls: { cert: pki('server.crt'), key: pki('server.key'), ca: pki('ca.crt'), requireClientCert: false },
    });
    tlsPort = t.server.listening.find((l) => l.transport === 'tls')!.port;
    wssPort = t.server.listening.find((l) => l.transport === 'wss')!.port;
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('serves SIP over TLS to a client that verifies the server certificate', async () => {
    const socket = await tlsConnect(tlsPort);
    const response = firstResponse(socket);
    socket.write(options(tlsPort));
    expect(await response).toBe('SIP/2.0 200 OK');
    socket.destroy();
  });

  it('is refused by a client that does not trust its CA', async () => {
    await expect(tlsConnect(tlsPort, { ca: readFileSync(pki('untrusted-ca.crt')) })).rejects.toThrow();
  });

  it('serves SIP over secure WebSocket (RFC 7118)', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${wssPort}`, 'sip', { ca });
    await new Promise((r, j) => {
      ws.once('open', r);
      ws.once('error', j);
    });
    const reply = new Promise<string>((r) =>
      ws.once('message', (d: Buffer) => r(d.toString().split('\r\n')[0])),
    );
    ws.send(options(wssPort));
    expect(await reply).toBe('SIP/2.0 200 OK');
    ws.close();
  });
});

describe('mutual TLS (server links, federation)', () => {
  let t: TestServer;
  let tlsPort: number;
  beforeAll(async () => {
    t = await startTestServer({
      listen: { tcp: { host: '127.0.0.1', port: 0 }, tls: { host: '127.0.0.1', port: 0 } },
      tls: { cert: pki('server.crt'), key: pki('server.key'), ca: pki('ca.crt'), requireClientCert: true },
    });
    tlsPort = t.server.listening.find((l) => l.transport === 'tls')!.port;
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('accepts a peer with a certificate from the trusted CA', async () => {
    const socket = await tlsConnect(tlsPort, {
      cert: readFileSync(pki('partner-edge.crt')),
      key: readFileSync(pki('partner-edge.key')),
    });
    const response = firstResponse(socket);
    socket.write(options(tlsPort));
    expect(await response).toBe('SIP/2.0 200 OK');
    socket.destroy();
  });

  it('refuses a peer without a certificate, and one signed by an unknown CA', async () => {
    const attempt = async (extra: { cert?: Buffer; key?: Buffer }) => {
      const socket = await tlsConnect(tlsPort, extra);
      const response = firstResponse(socket);
      socket.write(options(tlsPort));
      return response;
    };
    await expect(attempt({})).rejects.toThrow();
    await expect(
      attempt({ cert: readFileSync(pki('impostor-edge.crt')), key: readFileSync(pki('impostor-edge.key')) }),
    ).rejects.toThrow();
  });
});
