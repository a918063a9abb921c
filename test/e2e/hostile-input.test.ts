import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzServer } from '../../bench/fuzz.js';
import { WELL_KNOWN_HEADERS } from '../../src/sip/headers.js';
import { fresh, RawSipClient } from '../support/raw-sip.js';
import { readMetric, startTestServer, type TestServer } from '../support/server.js';

/**
 * Hostile input over raw sockets, one server for both runs:
 *  - every header the parser knows, sent empty and as a bare comma on every method: each
 *    request gets an answer, and no server transaction is left behind (a `Route: ,` once
 *    leaked one per request, unanswered, for good);
 *  - a bounded fuzz run with a fixed seed (the long one is `npm run bench -- --fuzz N`): no
 *    request handler throws or leaves a request unanswered, and a well-formed request is
 *    served at the end.
 */

/** Every header the parser knows (one spelling each), and extension headers the services read or relay. */
const HEADERS = [
  ...new Set(WELL_KNOWN_HEADERS.filter((h) => h !== 'Call-Id')),
  'Proxy-Require',
  'Session-Expires',
  'Refer-To',
  'Referred-By',
  'Reason',
  'Warning',
  'P-Asserted-Identity',
  'P-Preferred-Identity',
  'Accept-Contact',
  'Reject-Contact',
  'Unsupported',
];
const METHODS = ['OPTIONS', 'MESSAGE', 'REGISTER', 'SUBSCRIBE', 'PUBLISH', 'NOTIFY', 'INVITE', 'BYE', 'INFO'];
/** Without these a response cannot be addressed or matched, so dropping the request is correct. */
const UNANSWERABLE = new Set(['via', 'from', 'to', 'call-id', 'cseq', 'content-length']);

function request(method: string, port: number, header: string, value: string, inDialog: boolean) {
  const ruri = method === 'REGISTER' ? 'sip:example.com' : 'sip:bob@example.com';
  const lines = new Map<string, string>([
    ['via', `SIP/2.0/TCP 127.0.0.1:${port};branch=z9hG4bK${fresh('e')}`],
    ['from', `<sip:alice@example.com>;tag=${fresh('f')}`],
    ['to', `<sip:bob@example.com>${inDialog ? ';tag=t1' : ''}`],
    ['call-id', fresh('empty-')],
    ['cseq', `1 ${method}`],
    ['max-forwards', '70'],
    ['contact', `<sip:alice@127.0.0.1:${port};transport=tcp>`],
    ['event', 'presence'],
    ['content-length', '0'],
  ]);
  const key = header.toLowerCase();
  lines.set(key, value);
  // Content-Length last, so an empty one is the header that ends the message head.
  const cl = lines.get('content-length') ?? '0';
  lines.delete('content-length');
  const text = [...lines].map(([name, v]) => `${name === key ? header : name}: ${v}`.trimEnd());
  text.push(`${key === 'content-length' ? header : 'Content-Length'}: ${cl}`.trimEnd());
  return { text: `${method} ${ruri} SIP/2.0\r\n${text.join('\r\n')}\r\n\r\n`, via: lines.get('via') };
}

function serverTransactions(t: TestServer): Promise<number> {
  return readMetric(t.server.httpUrl, 'parley_sip_server_transactions');
}

describe('hostile input: empty headers and fuzzing', () => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer();
    await t.addUser('alice', 'pw');
    await t.addUser('bob', 'pw');
  });
  afterAll(async () => {
    await t?.stop();
  });

  it('answers each request and keeps no transaction', async () => {
    const unanswered: string[] = [];
    const closedEarly: string[] = [];
    let sent = 0;
    for (const header of HEADERS) {
      const client = await RawSipClient.open(t.tcpPort);
      for (const method of METHODS) {
        for (const value of ['', ',', ' , ,']) {
          for (const inDialog of [false, true]) {
            if (client.closed) {
              closedEarly.push(`${header} before ${method}`);
              break;
            }
            const { text } = request(method, client.localPort, header, value, inDialog);
            client.send(text);
            sent++;
            let answered: number | undefined;
            try {
              answered = (await client.response(1500)).status;
            } catch {
              answered = undefined;
            }
            if (answered === undefined && !UNANSWERABLE.has(header.toLowerCase()) && !client.closed)
              unanswered.push(`${method} with ${header}: "${value}"${inDialog ? ' in dialog' : ''}`);
            if (answered !== undefined && answered >= 300 && method === 'INVITE') {
              // The ACK for a failure belongs to the INVITE transaction (RFC 3261 17.1.1.3).
              const via = /^via: ([^\r\n]*)/im.exec(text)?.[1] ?? '';
              client.send(
                `ACK sip:bob@example.com SIP/2.0\r\nVia: ${via}\r\n${['From', 'Call-ID']
                  .map((h) => new RegExp(`^${h}: [^\\r\\n]*`, 'im').exec(text)?.[0] ?? '')
                  .join(
                    '\r\n',
                  )}\r\nTo: <sip:bob@example.com>;tag=x\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`,
              );
            }
          }
        }
      }
      client.close();
    }
    expect(unanswered).toEqual([]);
    // Only a message that cannot be framed or matched may end its connection.
    expect(closedEarly.filter((c) => !UNANSWERABLE.has(c.split(' ')[0].toLowerCase()))).toEqual([]);
    expect(sent).toBeGreaterThan(HEADERS.length * METHODS.length * 3);

    // Still serving, and nothing held: the transactions of failed INVITEs end on their ACK.
    const probe = await RawSipClient.open(t.tcpPort);
    probe.send(request('OPTIONS', probe.localPort, 'User-Agent', 'probe', false).text);
    expect((await probe.response()).status).toBe(407);
    probe.close();
    const deadline = Date.now() + 5000;
    while ((await serverTransactions(t)) > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(await serverTransactions(t)).toBe(0);
  }, 180_000);

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
