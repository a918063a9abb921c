import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzServer } from '../../bench/fuzz.js';
import { RawSipClient } from '../support/raw-sip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';

/**
 * A bounded fuzz run with a fixed seed (the long one is `npm run bench -- --fuzz N`): the
 * server answers throughout, no request handler throws or leaves a request unanswered, and
 * a well-formed request is served at the end.
 */

describe('fuzzing over TCP and WebSocket', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    await t.addUser('alice', 'pw');
    await t.addUser('bob', 'pw');
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('survives 10,000 mutated messages (seed 20261202) and keeps serving', async () => {
    const result = await fuzzServer({
      host: '127.0.0.1',
      port: t.tcpPort,
      wsPort: t.wsPort,
      count: 10_000,
      seed: 20261202,
    });
    expect(result.sent).toBe(10_000);
    // The server answered a good share of what it could parse.
    expect(result.responses).toBeGreaterThan(500);
    expect(await readMetric(t.server.httpUrl, 'parley_failures_total', { kind: 'internal' })).toBe(0);

    const probe = await RawSipClient.open(t.tcpPort);
    probe.send(
      `OPTIONS sip:127.0.0.1:${t.tcpPort} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:${probe.localPort};branch=z9hG4bKprobe1\r\nFrom: <sip:alice@example.com>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`,
    );
    expect((await probe.response()).status).toBe(200);
    probe.close();
    expect((await fetch(`${t.server.httpUrl}/health`)).status).toBe(200);
  }, 120_000);
});
