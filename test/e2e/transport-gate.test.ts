import { readFileSync } from 'node:fs';
import { connect as tcp } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import pino from 'pino';
import { expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { Flow } from '../../src/transport/flow.js';
import { TransportLayer } from '../../src/transport/layer.js';

const pki = (n: string) => new URL(`../../fixtures/pki/${n}`, import.meta.url).pathname;
/**
 * The transport layer's accept gate under TLS and WebSocket: a trusted proxy's PROXY header
 * is read before the TLS or HTTP server sees the connection, and counts come back to zero.
 */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('reads a PROXY header ahead of TLS and secure WebSocket handshakes, and releases every count on close', async () => {
  const layer = new TransportLayer({
    listen: { tls: { host: '127.0.0.1', port: 0 }, wss: { host: '127.0.0.1', port: 0 } },
    tls: { cert: readFileSync(pki('server.crt')), key: readFileSync(pki('server.key')) },
    log: pino({ level: 'silent' }),
    limits: { trustedProxies: ['127.0.0.1'], headerTimeoutMs: 2000 },
  });
  const flows: Flow[] = [];
  const msgs: string[] = [];
  const listening = await layer.start({
    onMessage: (m, f) => {
      flows.push(f);
      msgs.push(m.method);
    },
    onParseError: () => {},
    onFlowClosed: () => {},
  });
  const tlsPort = listening.find((l) => l.transport === 'tls')!.port;
  const wssPort = listening.find((l) => l.transport === 'wss')!.port;
  const opt =
    'OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TLS 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n';
  // PROXY then TLS
  const raw = tcp(tlsPort, '127.0.0.1');
  await new Promise((r) => raw.once('connect', r));
  raw.write('PROXY TCP4 198.51.100.9 127.0.0.1 41000 5061\r\n');
  const s = tlsConnect({ socket: raw, rejectUnauthorized: false });
  await new Promise((r) => s.once('secureConnect', r));
  s.write(opt);
  await sleep(300);
  expect(flows[0]?.remoteAddress).toBe('198.51.100.9');
  expect(flows[0]?.remotePort).toBe(41000);
  expect(layer.connectionCount).toBe(1);
  s.destroy();
  // WSS with PROXY v1
  const raw2 = tcp(wssPort, '127.0.0.1');
  await new Promise((r) => raw2.once('connect', r));
  raw2.write('PROXY TCP4 198.51.100.10 127.0.0.1 42000 443\r\n');
  const ws = new WebSocket(`wss://127.0.0.1:${wssPort}`, 'sip', {
    rejectUnauthorized: false,
    createConnection: () => tlsConnect({ socket: raw2, rejectUnauthorized: false }),
  } as never);
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  ws.send(opt.replace('c1', 'c2'));
  await sleep(300);
  expect(flows[1]?.remoteAddress).toBe('198.51.100.10');
  ws.close();
  // failed handshake: garbage on TLS port
  const bad = tcp({ port: tlsPort, host: '127.0.0.1', localAddress: '127.0.0.2' });
  await new Promise((r) => bad.once('connect', r));
  bad.write('hello there\r\n\r\n');
  bad.on('error', () => {});
  // silent TLS connection: header timeout
  const silent = tcp({ port: tlsPort, host: '127.0.0.1', localAddress: '127.0.0.2' });
  silent.on('error', () => {});
  let silentClosed = false;
  silent.on('close', () => {
    silentClosed = true;
  });
  await sleep(3000);
  expect(silentClosed).toBe(true);
  expect(msgs).toEqual(['OPTIONS', 'OPTIONS']);
  expect(layer.connectionCount).toBe(0);
  expect(layer.flowCount).toBe(0);
  await layer.stop();
}, 20000);

it('reads a PROXY header ahead of a WebSocket upgrade', async () => {
  const wsLayer = new TransportLayer({
    listen: { ws: { host: '127.0.0.1', port: 0 } },
    log: pino({ level: 'silent' }),
    limits: { trustedProxies: ['127.0.0.1'] },
  });
  const flows: Flow[] = [];
  const l = await wsLayer.start({
    onMessage: (_m, f) => flows.push(f),
    onParseError: () => {},
    onFlowClosed: () => {},
  });
  const raw = tcp(l[0].port, '127.0.0.1');
  await new Promise((r) => raw.once('connect', r));
  raw.write('PROXY TCP4 198.51.100.11 127.0.0.1 43000 80\r\n');
  await sleep(50);
  const ws = new WebSocket(`ws://127.0.0.1:${l[0].port}`, 'sip', { createConnection: () => raw } as never);
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  ws.send(
    'OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/WS 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@b>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n',
  );
  await sleep(300);
  expect(flows[0]?.remoteAddress).toBe('198.51.100.11');
  ws.close();
  await sleep(200);
  expect(wsLayer.connectionCount).toBe(0);
  await wsLayer.stop();
}, 10000);

it('answers a WebSocket upgrade that arrives in the same packet as the PROXY header (HAProxy send-proxy-v2)', async () => {
  const wsLayer = new TransportLayer({
    listen: { ws: { host: '127.0.0.1', port: 0 } },
    log: pino({ level: 'silent' }),
    limits: { trustedProxies: ['127.0.0.1'], headerTimeoutMs: 2000 },
  });
  const l = await wsLayer.start({ onMessage: () => {}, onParseError: () => {}, onFlowClosed: () => {} });
  // Version 2, PROXY, TCP over IPv4: 198.51.100.12:44000 -> 127.0.0.1:80.
  const header = Buffer.from('0d0a0d0a000d0a515549540a2111000cc633640c7f000001abe00050', 'hex');
  const upgrade =
    'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n';
  const raw = tcp(l[0].port, '127.0.0.1');
  await new Promise((r) => raw.once('connect', r));
  let answer = '';
  raw.on('data', (d) => {
    answer += d;
  });
  raw.write(Buffer.concat([header, Buffer.from(upgrade)]));
  await sleep(500);
  expect(answer.split('\r\n')[0]).toBe('HTTP/1.1 101 Switching Protocols');
  raw.destroy();
  await wsLayer.stop();
}, 10000);
